"""Kepler's equation: an orbit's eccentric anomaly from an exactly known mean anomaly.

Model::

    e ~ Beta(2, 5)              orbital eccentricity          (site "e")
    E ~ Uniform(0, 2π)          eccentric anomaly             (site "E")
    M = E − e · sin E           mean anomaly, observed exactly (M = 1.2)

What it shows: a relation with **no closed-form inverse**. ``E`` appears inside
and outside ``sin``, so no rule solves it; but ``∂M/∂E = 1 − e cos E ≥ 0`` for
every ``e`` in the prior's support [0, 1], which ppinv proves by interval
arithmetic at build time, so each ``(M, e)`` has exactly one ``E`` and ppinv
solves for it numerically (Newton on a bracket, to round-off) with the exact
density term ``−log(1 − e cos E)``. θ is ``e`` (one dimension in [0, 1]), which
ppinv chooses by itself (``ppinv.theta_choice``): its own order of preferences frees
``E`` and solves ``e = (E − M) / sin E``, but only about 15 % of prior draws of ``E``
give an ``e`` in [0, 1] at the data, a wall NUTS hits often; freeing ``e`` maps every
draw to a valid point, so the choice takes it. ``free=["e"]`` says so explicitly.

Reference: in the ``e`` chart the posterior density is

    p(e | M) ∝ Beta(e; 2, 5) · Uniform(E(e, M)) / (1 − e cos E(e, M))

(with ``E(e, M)`` the root of Kepler's equation), which :func:`reference_moments`
integrates on a grid, solving the equation with SciPy's ``brentq``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

M_OBS = 1.2
DATA = {"M": M_OBS}
LATENT_DIM = 2
OBSERVED_DIM = 1


def model():
    e = numpyro.sample("e", dist.Beta(2.0, 5.0))
    E = numpyro.sample("E", dist.Uniform(0.0, 2 * math.pi))
    numpyro.deterministic("M", E - e * jnp.sin(E))


def conditioned(M: float = M_OBS, free=None, choose_theta: bool = True):
    """``ppinv.condition(model, {"M": M})``: θ is the eccentricity, ``E`` solved numerically.

    ppinv's θ choice samples ``e`` and solves Kepler's equation for ``E`` (the monotone
    numeric solve). ``free`` names latents to free first, as in :func:`ppinv.condition`;
    ``choose_theta=False`` keeps the scheduler's own order, which frees ``E`` and solves
    ``e = (E − M) / sin E`` in closed form — also exact, but ``e`` must then land in
    [0, 1], a hard wall in θ-space that NUTS hits often.
    """
    return ppinv.condition(model, {"M": M}, free=list(free or ()), choose_theta=choose_theta)


def solve_kepler(M, e):
    """``E`` with ``E − e sin E = M`` (SciPy, for the reference)."""
    from scipy.optimize import brentq

    return brentq(lambda E: E - e * math.sin(E) - M, 0.0, 2 * math.pi, xtol=1e-14)


def reference_moments(M: float = M_OBS, n: int = 4001):
    """Posterior means and variances of ``e`` and ``E`` by quadrature over ``e``."""
    from scipy.stats import beta

    es = np.linspace(0.0, 1.0, n)[1:-1]
    Es = np.array([solve_kepler(M, e) for e in es])
    w = beta(2.0, 5.0).pdf(es) / (1.0 - es * np.cos(Es))
    w = w / w.sum()
    out = {}
    for name, v in (("e", es), ("E", Es)):
        mean = float(np.sum(w * v))
        out[name] = {"mean": mean, "var": float(np.sum(w * (v - mean) ** 2))}
    return out
