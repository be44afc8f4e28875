"""Sum of independent gammas observed exactly: the posterior is a scaled Dirichlet.

Model::

    x_i ~ Gamma(α_i, 1)  (i = 1..K, one vector site, default K = 50),   y = Σ_i x_i   (observed)

What it shows: a positive vector latent whose exact conditional lives on a
scaled simplex; ppinv's sum rule with positive summands gives a simplex-valued θ
(``x = y · θ``), so a (K−1)-dimensional posterior with a hard boundary.

Closed form: ``x / y | y  ~  Dirichlet(α)`` (independent of ``y``), hence
``E[x_i] = y α_i / α₀`` and ``Var[x_i] = y² α_i (α₀ − α_i) / (α₀² (α₀ + 1))``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

K_DEFAULT = 50
Y = 40.0


def alpha(k: int = K_DEFAULT) -> np.ndarray:
    """Shape parameters ``α_i``: evenly spaced in [0.5, 3]."""
    return np.linspace(0.5, 3.0, k)


def make_model(k: int = K_DEFAULT):
    a = jnp.asarray(alpha(k))

    def model():
        x = numpyro.sample("x", dist.Gamma(a, 1.0).to_event(1))
        numpyro.deterministic("total", jnp.sum(x))

    model.__name__ = f"gamma_sum_{k}"
    return model


model = make_model()


def data(y: float = Y):
    return {"total": y}


DATA = data()
LATENT_DIM = K_DEFAULT
OBSERVED_DIM = 1


def conditioned(k: int = K_DEFAULT, y: float = Y):
    """``ppinv.condition(make_model(k), {"total": y})``."""
    return ppinv.condition(make_model(k), data(y))


def reference_moments(k: int = K_DEFAULT, y: float = Y):
    """Closed-form posterior mean and variance of ``x`` (elementwise)."""
    a = alpha(k)
    a0 = a.sum()
    mean = a / a0
    return {"mean": y * mean, "var": y**2 * mean * (1 - mean) / (a0 + 1)}


def reference_posterior(rng_key=0, num_samples: int = 1000, k: int = K_DEFAULT, y: float = Y):
    """Exact posterior draws ``{"x"}``: ``y · Dirichlet(α)``."""
    return {"x": y * np.random.default_rng(rng_key).dirichlet(alpha(k), size=num_samples)}
