"""What the comparison measures: reference posteriors (closed form or quadrature), moments, ESS, R-hat."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from ppinv.diagnostics import constraint_violation  # noqa: E402
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin  # noqa: E402

import models  # noqa: E402
from models import bilinear  # noqa: E402

# =====================================================================================
# models: what to compare and against what
# =====================================================================================
def _quadrature_manifold_toy():
    mt = models.manifold_toy
    r = mt.t0_range()
    t0 = np.linspace(-r, r, 400001)[1:-1]
    w = mt.reference_density(t0)
    w = w / w.sum()
    t1sq = mt.Y - t0**2 * (t0**2 - 0.5)
    return {"t0": (0.0, math.sqrt(np.sum(w * t0**2))), "t1": (0.0, math.sqrt(np.sum(w * t1sq)))}


def closed_form_reference(name):
    """``{quantity: (mean array, sd array)}`` from the closed form, or None."""
    if name == "product_lognormal":
        m = models.product_lognormal.reference_moments()
        return {"log_a": (m["log_a_mean"], math.sqrt(m["log_a_var"])),
                "log_b": (m["log_a_mean"], math.sqrt(m["log_a_var"]))}
    if name == "linear_gaussian":
        m = models.linear_gaussian.reference_moments()
        return {"x": (np.asarray(m["mean"]), np.sqrt(np.diag(np.asarray(m["cov"]))))}
    if name == "gamma_sum":
        m = models.gamma_sum.reference_moments()
        return {"x": (m["mean"], np.sqrt(m["var"]))}
    if name == "sine":
        m = models.sine.reference_moments()
        return {"x": (m["mean"], math.sqrt(m["var"]))}
    if name == "manifold_toy":
        return _quadrature_manifold_toy()
    if name == "kepler":
        m = models.kepler.reference_moments()
        return {k: (m[k]["mean"], math.sqrt(m[k]["var"])) for k in ("e", "E")}
    if name == "bilinear":
        m = bilinear.reference_moments()
        return {f"x{i}": (m["mean"][i], math.sqrt(m["var"][i])) for i in range(3)}
    if name in ("enzyme_assay", "isotope_mixing", "village_totals", "stick_breaking_abundance",
                "binding_equilibrium", "vote_shares", "drifter_currents"):
        m = models.ALL_MODELS[name].reference_moments()  # {site: {"mean", "var"}}
        return {k: (np.asarray(v["mean"]), np.sqrt(np.asarray(v["var"]))) for k, v in m.items()}
    return None


def quantities(name, latents):
    """The quantities whose posterior moments are compared: ``{name: array (chains, draws, ...)}``."""
    if name == "product_lognormal":
        return {"log_a": np.log(latents["a"]), "log_b": np.log(latents["b"])}
    return dict(latents)


# =====================================================================================
# metrics
# =====================================================================================
def _flat(v, chains):
    v = np.asarray(v, float)
    return v.reshape(chains, v.shape[1], -1) if v.ndim >= 2 else v.reshape(chains, -1, 1)


def moments(q, weights=None):
    """Per-component mean, sd, ESS of an array (chains, draws, k); weighted (one chain) if weights."""
    if weights is not None:
        x = q[0]
        m = np.sum(weights[:, None] * x, axis=0)
        sd = np.sqrt(np.sum(weights[:, None] * (x - m) ** 2, axis=0))
        ess = np.full(x.shape[1], 1.0 / np.sum(weights**2))
        return m, sd, ess
    x = q.reshape(-1, q.shape[-1])
    ess = np.asarray(effective_sample_size(q)) if q.shape[1] > 3 else np.full(q.shape[-1], np.nan)
    return x.mean(0), x.std(0), ess


def metrics(name, res, reference, cm):
    lat, weights, chains = res["latents"], res["weights"], res["chains"]
    ess_all, rhat_all = [], []
    for k, v in lat.items():
        q = _flat(v, chains)
        _, _, ess = moments(q, weights)
        ess_all.append(np.min(ess))
        if weights is None and chains > 1:
            rhat_all.append(np.nanmax(np.asarray(split_gelman_rubin(q))))
    ess_min = float(np.nanmin(ess_all))
    flat = {k: jnp.asarray(np.asarray(v).reshape((-1,) + np.asarray(v).shape[2:])) for k, v in lat.items()}
    if weights is not None:  # ABC: the violation of the final population (every particle)
        pass
    violation = constraint_violation(cm, flat)
    mean_err = sd_err = z_max = float("nan")
    if reference is not None:
        me, se, zs = [], [], []
        for k, v in quantities(name, lat).items():
            q = _flat(v, chains)
            m, sd, ess = moments(q, weights)
            ref = reference[k]
            rm, rsd = np.ravel(ref[0]), np.ravel(ref[1])
            rmc = np.ravel(ref[2]) if len(ref) > 2 else np.zeros_like(rm)
            ok = rsd > 1e-12
            if not ok.any():  # a latent the observations fix (stick_breaking_abundance's sticks)
                continue
            mcse = sd / np.sqrt(np.maximum(ess, 1.0))
            me.append(np.max(np.abs(m - rm)[ok] / rsd[ok]))
            se.append(np.max(np.abs(sd[ok] / rsd[ok] - 1)))
            zs.append(np.max(np.abs(m - rm)[ok] / np.sqrt(mcse[ok] ** 2 + rmc[ok] ** 2 + 1e-300)))
        mean_err, sd_err, z_max = float(np.max(me)), float(np.max(se)), float(np.max(zs))
    wall, comp = res["wall_s"], res["compile_s"]
    # compile time is read on the process clock (every thread): where it comes near the wall time,
    # the run alone is not measurable, and ESS per second of what is left would be a figure of noise
    run_wall = wall - comp
    steady = {}
    if res.get("steady_wall_s"):
        steady = dict(ess_per_s_steady=ess_min / res["steady_wall_s"])
    return dict(
        **steady,
        ess_min=ess_min,
        ess_per_s=ess_min / wall,
        ess_per_s_run=ess_min / run_wall if run_wall > 0.05 * wall else float("nan"),
        violation=violation,
        mean_err=mean_err,
        sd_err=sd_err,
        z_max=z_max,
        rhat=float(np.max(rhat_all)) if rhat_all else float("nan"),
    )


