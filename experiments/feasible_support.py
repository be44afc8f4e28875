"""The 3-link arm (``models/arm.py``) with θ's support as it was (the real line: NUTS meets the
edge of the last two links' reach) and narrowed to the feasible arc (``ppinv/geometry/feasible.py``).

InverseNUTS, 2 chains × (500 warm-up + 500 draws) by default; prints divergences per 1,000
transitions, r̂ and min-ESS over the angles, and the posterior of q₀ against quadrature.

    python experiments/feasible_support.py [--warmup N] [--samples N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from numpyro.infer import MCMC  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

import ppinv  # noqa: E402
import ppinv.conditioning.feasible as feasible  # noqa: E402
from models import arm  # noqa: E402
from tests.test_joint_chain import _arm_posterior_by_quadrature  # noqa: E402


def conditioned(narrow):
    keep = feasible.feasible_theta
    if not narrow:  # the plan as it was: θ's support untouched
        feasible.feasible_theta = lambda inverse, ctx, y: (inverse, None)
    try:
        cm = ppinv.condition(arm.make_model(3), arm.data(3))
        cm.plan()
    finally:
        feasible.feasible_theta = keep
    return cm


def run(narrow, warmup, samples, seed):
    cm = conditioned(narrow)
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=warmup, num_samples=samples, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed))
    q = np.asarray(mcmc.get_samples(group_by_chain=True)["angles"])
    wall = time.perf_counter() - t0
    div = int(np.sum(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])))
    rhat = float(np.max(numpyro.diagnostics.split_gelman_rubin(q)))
    ess = float(np.min(numpyro.diagnostics.effective_sample_size(q)))
    return dict(theta=list(cm.plan().theta_sites.values()), support=cm.plan().schedule.theta["cumsum_value"].support,
                div=1000.0 * div / q[..., 0].size, rhat=rhat, ess=ess, wall=wall, mean=float(q[..., 0].mean()),
                ess_q0=float(numpyro.diagnostics.effective_sample_size(q[..., 0])),
                up=float(np.mean(np.sin(q[..., 2]) > 0)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    mean, sd, up = _arm_posterior_by_quadrature()
    print(f"quadrature: E[q0] = {mean:.4f}, sd {sd:.4f}, elbow-up mass {up:.4f}")
    print("| θ support | div/1000 | r̂ | min-ESS | wall s | E[q0] (z) | elbow-up |")
    print("|---|---|---|---|---|---|---|")
    for narrow in (False, True):
        r = run(narrow, a.warmup, a.samples, a.seed)
        z = (r["mean"] - mean) / (sd / np.sqrt(r["ess_q0"]))
        print(f"| {r['support']} | {r['div']:.1f} | {r['rhat']:.3f} | {r['ess']:.0f} | {r['wall']:.1f} | "
              f"{r['mean']:.4f} ({z:+.2f}) | {r['up']:.3f} |")


if __name__ == "__main__":
    main()
