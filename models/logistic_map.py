"""The logistic map iterated 20 times from unknown start and rate; only the last state is observed.

Model::

    x₀ ~ Beta(2, 2),   b ~ Uniform(3, 4)          (chaotic regime)
    x_{t+1} = b · x_t · (1 − x_t),  t = 0..n−1    (n = 20, a lax.scan)
    x_n observed exactly

What it shows: inversion through ``lax.scan`` with a quadratic per step. Given
``b`` (freed, continuous θ) each step back has two preimages
``x_t = (1 ± √(1 − 4 x_{t+1}/b)) / 2``; ppinv solves the step as a degree-2
polynomial block and picks the root with one discrete θ per step (stacked:
``n`` discrete θ), so the posterior has up to 2ⁿ branches, many outside the
domain (``x_{t+1} > b/4`` has no real preimage). Sensitive dependence on
initial conditions makes forward conditioning hopeless; backwards it is exact.
No closed form.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax

import ppinv

N_STEPS = 20
#: Start and rate that generated the data.
X0_TRUE, B_TRUE = 0.3, 3.7


def iterate(x0, b, n_steps: int = N_STEPS):
    """``x_n`` after ``n_steps`` logistic-map steps (a ``lax.scan``)."""

    def step(x, _):
        return b * x * (1 - x), None

    xn, _ = lax.scan(step, x0, None, length=n_steps)
    return xn


def make_model(n_steps: int = N_STEPS):
    def model():
        x0 = numpyro.sample("x0", dist.Beta(2.0, 2.0))
        b = numpyro.sample("b", dist.Uniform(3.0, 4.0))
        numpyro.deterministic("xn", iterate(x0, b, n_steps))

    model.__name__ = f"logistic_map_{n_steps}"
    return model


model = make_model()


def data(n_steps: int = N_STEPS):
    """``x_n`` from ``(x₀, b) = (0.3, 3.7)``, computed in float64 with NumPy."""
    x = X0_TRUE
    for _ in range(n_steps):
        x = B_TRUE * x * (1 - x)
    return {"xn": np.float64(x)}


DATA = data()
LATENT_DIM = 2
OBSERVED_DIM = 1


def conditioned(n_steps: int = N_STEPS):
    """``ppinv.condition(make_model(n_steps), data(n_steps))``."""
    return ppinv.condition(make_model(n_steps), data(n_steps))
