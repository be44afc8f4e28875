"""Enzyme assay as a sensor: a substrate concentration read off one exactly known Michaelis–Menten rate.

Model::

    Vmax ~ LogNormal(log 2, 0.5),   Km ~ LogNormal(log 1, 0.5)            (enzyme constants)
    v_cal[j] ~ Normal(Vmax · S_cal[j] / (Km + S_cal[j]), σ)   j = 1..6     (calibration runs: V_CAL)
    S ~ LogNormal(log 1, 1)                                               (the sample's substrate)
    v = Vmax · S / (Km + S)                                               (observed exactly)

A calibration series at known substrate concentrations ``S_cal`` (noise ``σ =
0.05``) informs the enzyme's constants; the rate measured on a sample of unknown
concentration is then treated as exact (it is the read-out being inverted), so
``S`` lies on the curve ``S = v·Km / (Vmax − v)`` given the constants.

What it shows: a rational function of one unknown. ``free=["Vmax", "Km"]`` makes
the enzyme constants θ and ppinv solves ``y·(Km + S) − Vmax·S = 0`` for ``S``
as a Möbius map (one root, admissible where ``Vmax > v``), with its exact
``log|∂S/∂v| = log(Km·Vmax / (Vmax − v)²)``; a noisy likelihood and an exact
observation in one model.

Reference: the posterior of (Vmax, Km) has the density

    p(Vmax, Km | data) ∝ p(Vmax) p(Km) Π_j N(v_cal[j]; MM(S_cal[j]), σ) · p_S(S*) · Km·Vmax / (Vmax − v)²

with ``S* = v·Km / (Vmax − v)``, on ``Vmax > v``: :func:`reference_moments`
integrates it on a fine grid in (log Vmax, log Km) (two dimensions, so the
quadrature is exact to far below Monte Carlo error).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

#: substrate concentrations of the calibration runs (mM)
S_CAL = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
#: their measured rates: Vmax = 2.2, Km = 0.8 plus N(0, 0.05²) noise (numpy seed 11, rounded)
V_CAL = np.array([0.526, 0.914, 1.283, 1.546, 1.818, 1.974])
SIGMA = 0.05
#: the rate measured on the sample (its true substrate concentration was 1.3 mM)
V_SAMPLE = 1.36
VMAX_PRIOR = (np.log(2.0), 0.5)  # LogNormal(loc, scale)
KM_PRIOR = (np.log(1.0), 0.5)
S_PRIOR = (np.log(1.0), 1.0)
FREE = ("Vmax", "Km")


def rate(vmax, km, s):
    """Michaelis–Menten rate ``Vmax·S / (Km + S)``."""
    return vmax * s / (km + s)


def model(v_cal=V_CAL):
    """The calibration rates are observed (pass ``v_cal=None`` to simulate them)."""
    vmax = numpyro.sample("Vmax", dist.LogNormal(*VMAX_PRIOR))
    km = numpyro.sample("Km", dist.LogNormal(*KM_PRIOR))
    with numpyro.plate("calibration", len(S_CAL)):
        numpyro.sample("v_cal", dist.Normal(rate(vmax, km, jnp.asarray(S_CAL)), SIGMA),
                       obs=None if v_cal is None else jnp.asarray(v_cal))
    s = numpyro.sample("S", dist.LogNormal(*S_PRIOR))
    numpyro.deterministic("v", rate(vmax, km, s))


DATA = {"v": V_SAMPLE}
LATENT_DIM = 3
OBSERVED_DIM = 1


def conditioned(free=FREE):
    """``ppinv.condition(model, DATA, free=["Vmax", "Km"])``: S is solved from the rate."""
    return ppinv.condition(model, DATA, free=list(free) if free else None)


def substrate(vmax, km, v=V_SAMPLE):
    """The one preimage ``S = v·Km / (Vmax − v)`` (positive where ``Vmax > v``)."""
    return v * km / (vmax - v)


def _log_density(log_vmax, log_km, v=V_SAMPLE):
    """Log of the exact posterior density of (log Vmax, log Km) (unnormalised; −∞ where Vmax ≤ v)."""
    from scipy import stats  # only the reference needs scipy

    vmax, km = np.exp(log_vmax), np.exp(log_km)
    ok = vmax > v
    s = np.where(ok, substrate(vmax, km, v), 1.0)
    lp = stats.norm.logpdf(log_vmax, *VMAX_PRIOR) + stats.norm.logpdf(log_km, *KM_PRIOR)  # densities of the logs
    mm = vmax[..., None] * S_CAL / (km[..., None] + S_CAL)
    lp = lp + stats.norm.logpdf(V_CAL, mm, SIGMA).sum(-1)
    lp = lp + stats.lognorm.logpdf(s, S_PRIOR[1], scale=np.exp(S_PRIOR[0]))
    lp = lp + np.log(np.where(ok, km * vmax / np.where(ok, vmax - v, 1.0) ** 2, 1.0))
    return np.where(ok, lp, -np.inf)


def reference_moments(n: int = 601, v: float = V_SAMPLE):
    """Posterior mean and variance of ``Vmax``, ``Km`` and ``S`` by quadrature on a grid.

    The grid in (log Vmax, log Km) is centred on the mode of a coarse pass and spans ±12
    coarse standard deviations, so the neglected tails are below ``e⁻⁷⁰``.
    """

    def moments(lv, lk):
        LV, LK = np.meshgrid(lv, lk, indexing="ij")
        lp = _log_density(LV, LK, v)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        vmax, km = np.exp(LV), np.exp(LK)
        s = np.where(vmax > v, substrate(vmax, km, v), 0.0)
        out = {}
        for name, q in (("Vmax", vmax), ("Km", km), ("S", s), ("log_Vmax", LV), ("log_Km", LK)):
            m = np.sum(w * q)
            out[name] = {"mean": m, "var": np.sum(w * (q - m) ** 2)}
        return out

    coarse = moments(np.linspace(np.log(v) + 1e-9, np.log(20.0), 301), np.linspace(np.log(1e-3), np.log(50.0), 301))
    grids = []
    for name in ("log_Vmax", "log_Km"):
        m, sd = coarse[name]["mean"], np.sqrt(coarse[name]["var"])
        grids.append(np.linspace(m - 12 * sd, m + 12 * sd, n))
    grids[0] = grids[0][grids[0] > np.log(v)]
    fine = moments(*grids)
    return {k: fine[k] for k in ("Vmax", "Km", "S")}
