"""Reproducers of ppinv problems met while building ``compare.py``'s suite, re-checked on every full
run (:func:`ppinv_checks`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC

import models
from models import bilinear
from ppinv.diagnostics import constraint_violation
from ppinv.infer import InverseNUTS, pgf_initial_values


def ppinv_checks():
    """Reproducers of ppinv problems met while building this suite (all fixed since, each
    with a regression test); each row says whether it still holds."""
    rows = []
    cm = bilinear.conditioned(vector=True)
    x_true = jnp.array([1.0 - (-0.7) * 1.2, -0.7, 1.2])
    what = "bilinear with ONE vector site x (y = x[0] + x[1]*x[2]): PGF -> inverse round trip returns x"
    try:
        plan = cm.plan()
        x, _, ok = plan.invert([], plan.pgf([], {"x": x_true}))
        err = float(jnp.max(jnp.abs(x["x"] - x_true)))
        fx = float(x["x"][0] + x["x"][1] * x["x"][2])
        rows.append(dict(check=what, ok=err < 1e-9,
                         result=f"x_true = {np.round(np.asarray(x_true), 3).tolist()}, got "
                                f"{np.round(np.asarray(x['x']), 3).tolist()} (ok flag {bool(ok)}, f(x) = {fx:.4g}, "
                                "want 1)"))
    except Exception as err:
        rows.append(dict(check=what, ok=False, result=f"{type(err).__name__}: {err}"[:300]))
    what = "InverseNUTS on that vector-site model runs (10 + 10 steps)"
    try:
        mcmc = MCMC(InverseNUTS(cm), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.PRNGKey(0))
        v = constraint_violation(cm, mcmc.get_samples())
        rows.append(dict(check=what, ok=v < 1e-9, result=f"ran; constraint violation {v:.3g}"))
    except Exception as err:
        rows.append(dict(check=what, ok=False, result=f"{type(err).__name__}: {err}"[:300]))
    what = ("jax.jit(lambda k: pgf_initial_values(cm, k)) on a fresh lotka_volterra.conditioned() "
            "(plan built lazily inside the jit trace)")
    try:
        cm = models.lotka_volterra.conditioned()
        jax.jit(lambda k: pgf_initial_values(cm, k))(jax.random.PRNGKey(0))
        rows.append(dict(check=what, ok=True, result="works"))
    except Exception as err:
        rows.append(dict(check=what, ok=False, result=f"{type(err).__name__}: {str(err).splitlines()[0]}"[:300]))
    return rows
