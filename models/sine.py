"""A wide Gaussian observed through ``sin``: countably many isolated preimages.

Model::

    x ~ Normal(0, 5),     y = sin(x)   observed exactly (y = 0.6)

What it shows: a zero-dimensional "manifold" — the posterior is discrete,
supported on ``x_k = πk + (−1)ᵏ asin y`` for every integer ``k`` — reached by a
purely discrete θ (the period ``k``, an unbounded integer). No continuous θ at
all; samplers must move between periods (ppinv's Gibbs ±1 moves on ``k``).

Closed form: ``P(x = x_k | y) ∝ N(x_k; 0, 5²) / |cos x_k|``, and
``|cos x_k| = √(1 − y²)`` is the same for every ``k``, so the weights are the
prior density at the preimages (:func:`reference_posterior`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

SCALE = 5.0
Y = 0.6
DATA = {"y": Y}
LATENT_DIM = 1
OBSERVED_DIM = 1


def model():
    x = numpyro.sample("x", dist.Normal(0.0, SCALE))
    numpyro.deterministic("y", jnp.sin(x))


def conditioned(y: float = Y):
    """``ppinv.condition(model, {"y": y})``."""
    return ppinv.condition(model, {"y": y})


def reference_posterior(y: float = Y, k_max: int = 40):
    """Exact posterior: preimages ``x_k`` (|k| ≤ k_max) and their probabilities."""
    k = np.arange(-k_max, k_max + 1)
    x = np.pi * k + (-1.0) ** k * np.arcsin(y)
    logw = -0.5 * (x / SCALE) ** 2
    w = np.exp(logw - logw.max())
    return {"k": k, "x": x, "weights": w / w.sum()}


def reference_moments(y: float = Y):
    ref = reference_posterior(y)
    mean = float(np.sum(ref["weights"] * ref["x"]))
    return {"mean": mean, "var": float(np.sum(ref["weights"] * (ref["x"] - mean) ** 2))}
