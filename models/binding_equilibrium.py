"""Competitive binding: two ligands compete for one receptor; the totals are pipetted, the free species are latent.

Model (concentrations in μM)::

    K_A, K_B ~ LogUniform(2, 20)                      (dissociation constants of ligands A and B)
    R, A, B ~ Uniform(0, 1)                           (free receptor and free ligands at equilibrium)
    RA = R·A / K_A,   RB = R·B / K_B                  (mass action: the two complexes)
    totals = (R + RA + RB, A + RA, B + RB)            (observed exactly: what was pipetted)
    bound ~ Normal((RA, RB), σ)                       (a noisy read-out of each complex: BOUND)

What a user writes::

    def model():
        K_A = numpyro.sample("K_A", dist.LogUniform(2.0, 20.0))
        ...
        numpyro.deterministic("R_total", R + RA + RB)
        numpyro.deterministic("A_total", A + RA)
        numpyro.deterministic("B_total", B + RB)
        numpyro.sample("bound", dist.Normal(jnp.stack([RA, RB]), SIGMA), obs=BOUND)

    cm = ppinv.condition(model, {"R_total": 0.61, "A_total": 0.675, "B_total": 0.735},
                         free=["K_A", "K_B"])

What it shows: the mass balances are a square, coupled, nonlinear system in the free
concentrations ``(R, A, B)`` — every balance reads ``R`` and a ligand through a product,
no relation can be solved alone, and there is no closed form (a cubic in ``R``). With
the constants as θ (``free=["K_A", "K_B"]``, which ppinv's θ choice also takes by
itself: ``ppinv.condition(model, DATA)``), ppinv proves at build time that the
balances have one root over the supports (an interval enclosure of their Jacobian is a
P-matrix after weighting its columns: Gale–Nikaido, ``ppinv/joint/newton.py``) and solves
them by Newton's method per draw, with ``log|det| = −log|det ∂totals/∂(R, A, B)|`` and
derivatives by the implicit function theorem. The certificate needs weak binding against
the assay's concentrations (``K ≥ 2 μM`` against free concentrations below 1 μM); with
``K`` down to 1 μM the interval enclosure is too loose and ppinv refuses the block as
coupled. Without ``free`` ppinv frees ``R`` and ``K_A`` instead and solves the rest entry by
entry (also exact).

Reference: given ``(K_A, K_B)`` the free receptor solves the monotone scalar equation
``R_total = R + R·A_total/(K_A + R) + R·B_total/(K_B + R)`` (then ``A = A_total·K_A/(K_A + R)``,
``B`` alike), and by the change of variables the posterior of the constants is

    p(K_A, K_B | data) ∝ p(K_A) p(K_B) · p(R, A, B) · N(bound; (RA, RB), σ) / |det ∂totals/∂(R, A, B)|,

integrated by :func:`reference_moments` on a grid in (log K_A, log K_B) (bisection for
``R``, the Jacobian from ``jax.jacfwd`` of the balances; no ppinv).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

K_RANGE = (2.0, 20.0)  # μM: the prior range of both dissociation constants
FREE_MAX = 1.0  # μM: the assay is run below this concentration
SIGMA = 0.004  # μM: noise of the complex read-outs
#: generated with K_A = 4, K_B = 10, R = 0.5, A = 0.6, B = 0.7 (RA = 0.075, RB = 0.035)
TOTALS = {"R_total": 0.61, "A_total": 0.675, "B_total": 0.735}
BOUND = np.array([0.078, 0.033])
FREE = ("K_A", "K_B")


def complexes(R, A, B, K_A, K_B):
    """The receptor–ligand complexes ``(RA, RB)`` at equilibrium (mass action)."""
    return R * A / K_A, R * B / K_B


def balances(R, A, B, K_A, K_B):
    """The total receptor and ligand concentrations of an equilibrium."""
    RA, RB = complexes(R, A, B, K_A, K_B)
    return R + RA + RB, A + RA, B + RB


def model(bound=BOUND):
    """The read-outs are observed (``bound=None`` simulates them)."""
    K_A = numpyro.sample("K_A", dist.LogUniform(*K_RANGE))
    K_B = numpyro.sample("K_B", dist.LogUniform(*K_RANGE))
    R = numpyro.sample("R", dist.Uniform(0.0, FREE_MAX))
    A = numpyro.sample("A", dist.Uniform(0.0, FREE_MAX))
    B = numpyro.sample("B", dist.Uniform(0.0, FREE_MAX))
    RA, RB = complexes(R, A, B, K_A, K_B)
    numpyro.deterministic("R_total", R + RA + RB)
    numpyro.deterministic("A_total", A + RA)
    numpyro.deterministic("B_total", B + RB)
    numpyro.sample("bound", dist.Normal(jnp.stack([RA, RB]), SIGMA), obs=None if bound is None else jnp.asarray(bound))


DATA = dict(TOTALS)
LATENT_DIM = 5
OBSERVED_DIM = 3


def conditioned(free=FREE):
    """``ppinv.condition(model, DATA, free=["K_A", "K_B"])``: the free concentrations by Newton."""
    return ppinv.condition(model, DATA, free=list(free) if free else None)


def free_receptor(K_A, K_B, totals=TOTALS, iterations=200):
    """The free receptor ``R`` of the equilibrium at constants ``K_A, K_B`` (arrays), by bisection."""
    R_t, A_t, B_t = totals["R_total"], totals["A_total"], totals["B_total"]
    lo, hi = np.zeros_like(K_A), np.full_like(K_A, R_t)
    for _ in range(iterations):  # the balance grows with R: bisection brackets its one root
        mid = 0.5 * (lo + hi)
        above = mid + mid * A_t / (K_A + mid) + mid * B_t / (K_B + mid) > R_t
        lo, hi = np.where(above, lo, mid), np.where(above, mid, hi)
    return 0.5 * (lo + hi)


def _balance_jacobian_log_det(R, A, B, K_A, K_B):
    """``log|det ∂totals/∂(R, A, B)|`` by ``jax.jacfwd`` of :func:`balances` (vectorized)."""
    def log_det(r, a, b, ka, kb):
        jac = jax.jacfwd(lambda x: jnp.stack(balances(x[0], x[1], x[2], ka, kb)))(jnp.stack([r, a, b]))
        return jnp.linalg.slogdet(jac)[1]

    return np.asarray(jax.vmap(log_det)(*(jnp.asarray(v).ravel() for v in (R, A, B, K_A, K_B)))).reshape(np.shape(R))


def reference_moments(n: int = 301, totals=TOTALS, bound=BOUND):
    """Posterior mean and variance of ``K_A, K_B, R, A, B`` by quadrature over (log K_A, log K_B)."""
    log_k = np.linspace(np.log(K_RANGE[0]), np.log(K_RANGE[1]), n)
    LA, LB = np.meshgrid(log_k, log_k, indexing="ij")
    K_A, K_B = np.exp(LA), np.exp(LB)
    R = free_receptor(K_A, K_B, totals)
    A = totals["A_total"] * K_A / (K_A + R)
    B = totals["B_total"] * K_B / (K_B + R)
    inside = (R < FREE_MAX) & (A < FREE_MAX) & (B < FREE_MAX)
    # LogUniform: flat in log K; Uniform free concentrations: flat inside the box
    residual = (np.stack([R * A / K_A, R * B / K_B], -1) - np.asarray(bound)) / SIGMA
    log_p = -0.5 * np.sum(residual**2, -1) - _balance_jacobian_log_det(R, A, B, K_A, K_B)
    log_p = np.where(inside, log_p, -np.inf)
    w = np.exp(log_p - log_p.max())
    w /= w.sum()  # the mass lies well inside the prior range: no edge correction needed
    out = {}
    for name, q in (("K_A", K_A), ("K_B", K_B), ("R", R), ("A", A), ("B", B)):
        m = np.sum(w * q)
        out[name] = {"mean": m, "var": np.sum(w * (q - m) ** 2)}
    return out
