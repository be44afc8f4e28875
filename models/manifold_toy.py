"""Two-dimensional toy whose constraint set is a closed curve split into two branches.

Model (a noise-free version of a standard two-dimensional manifold-MCMC toy)::

    θ₀, θ₁ ~ Normal(0, 1)         (two scalar sites "t0", "t1")
    y = θ₁² + θ₀² (θ₀² − 1/2)      observed exactly, y = 1

What it shows: a one-dimensional constraint set (a closed curve through
(0, ±1) and (±1.13, 0)) that no single chart covers. ppinv frees the square
``v = θ₀²`` (a positive continuous θ), recovers ``θ₀ = ±√v`` with a discrete
sign θ, evaluates ``v (v − ½)`` forward and solves ``θ₁² = y − v(v − ½)`` with a
second sign θ: four charts (the quadrants), glued along the axes where the
parametrisation's Jacobian blows up; ``v`` with ``v(v − ½) > y`` is outside the
domain. The two signs of θ₁ are the two branches ``θ₁ = ±√(y − θ₀²(θ₀² − ½))``.

No closed-form moments, but the exact density along the curve in the θ₀
coordinate is ``p(θ₀, θ₁) / (2 |θ₁|)`` summed over both signs of θ₁
(:func:`reference_density`, integrate it with quadrature).
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

Y = 1.0
DATA = {"y": Y}
LATENT_DIM = 2
OBSERVED_DIM = 1


def f(t0, t1):
    return t1**2 + t0**2 * (t0**2 - 0.5)


def model():
    t0 = numpyro.sample("t0", dist.Normal(0.0, 1.0))
    t1 = numpyro.sample("t1", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", f(t0, t1))


def conditioned(y: float = Y):
    """``ppinv.condition(model, {"y": y})``."""
    return ppinv.condition(model, {"y": y})


def t0_range(y: float = Y) -> float:
    """``|θ₀|`` is at most this on the curve (where θ₁ = 0)."""
    return float(np.sqrt((0.5 + np.sqrt(0.25 + 4 * y)) / 2))


def reference_density(t0, y: float = Y):
    """Unnormalised exact posterior density of ``θ₀`` (both branches of θ₁ together)."""
    t0 = np.asarray(t0, dtype=float)
    s = y - t0**2 * (t0**2 - 0.5)
    t1 = np.sqrt(np.where(s > 0, s, np.nan))
    dens = np.exp(-0.5 * (t0**2 + t1**2)) / (2 * np.pi) / (2 * t1) * 2  # two signs, equal weight
    return np.where(s > 0, dens, 0.0)
