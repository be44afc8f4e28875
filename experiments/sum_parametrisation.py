"""Sum of 50 gammas observed exactly: simplex θ against the naive "all but one summand" θ.

ppinv inverts ``y = Σ xᵢ`` with positive summands by a point of the simplex per
group (``x = y · θ``), so every solved value stays positive. The naive
parametrisation — θ = the first K − 1 summands, the last ``y − Σθ`` — is just as
exact, but the last summand leaves its support wherever ``Σθ > y``: the density
is −∞ on most of θ-space. This script runs InverseNUTS on ``models/gamma_sum``
(K = 50, y = 40, closed form ``x/y ~ Dirichlet(α)``) with both, side by side.

Usage::

    python experiments/sum_parametrisation.py [--quick] [--out experiments/results] [--repeats R]

Writes ``sum_parametrisation[_quick].json`` and prints a table: min-ESS per
second of sampling (compile excluded, reported separately), divergences, and
the largest error of the posterior means in Monte Carlo standard errors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
from jax import lax  # noqa: E402

import ppinv  # noqa: E402
from ppinv.rules.linear import _reduce_sum_rule, _SumSolver  # noqa: E402


def naive_sum_rule(pat):
    """The default rule, but never the simplex: θ = all summands but the last."""
    solver = _reduce_sum_rule(pat)
    if isinstance(solver, _SumSolver) and solver.simplex:
        return _SumSolver(pat, simplex=False)
    return solver


def conditioned(kind):
    from models import gamma_sum

    if kind == "simplex":
        return gamma_sum.conditioned()
    with ppinv.overlay({lax.reduce_sum_p: naive_sum_rule}):
        return ppinv.condition(gamma_sum.make_model(), gamma_sum.DATA)


def run(kind, warmup, samples, chains, seed):
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC

    from models import gamma_sum

    cm = conditioned(kind)
    # both start from exact posterior draws (the naive θ rarely has a valid prior start:
    # 49 Gamma draws almost always sum past y)
    from models import pgf_init

    draws = gamma_sum.reference_posterior(seed, num_samples=chains)["x"]
    inits = [pgf_init(cm, {"x": d}) for d in draws]
    init = {k: jax.numpy.stack([i[k] for i in inits]) for k in inits[0]}
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method="vectorized", progress_bar=False)
    t0 = time.perf_counter()
    mcmc.warmup(jax.random.PRNGKey(seed), extra_fields=("diverging",), collect_warmup=False, init_params=init)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("diverging",))
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    run_s = time.perf_counter() - t0
    ess = effective_sample_size(x)
    ref = gamma_sum.reference_moments()
    mcse = np.sqrt(ref["var"]) / np.sqrt(np.maximum(ess, 1.0))
    z = np.abs(x.reshape(-1, x.shape[-1]).mean(0) - ref["mean"]) / mcse
    return dict(kind=kind, seed=seed, warmup_and_compile_s=warm_s, sampling_s=run_s, min_ess=float(ess.min()),
                ess_per_s=float(ess.min()) / run_s,
                divergences=int(np.sum(mcmc.get_extra_fields()["diverging"])), max_z=float(z.max()),
                violation=float(ppinv.diagnostics.constraint_violation(cm, mcmc.get_samples())))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    warmup, samples, chains = (50, 50, 2) if args.quick else (500, 1000, 4)
    repeats = args.repeats or (1 if args.quick else 3)
    rows = []
    for r in range(repeats):  # interleaved, so machine noise hits both alike
        for kind in ("simplex", "naive"):
            rows.append(run(kind, warmup, samples, chains, seed=r))
            print(json.dumps(rows[-1]))
    from experiments.machine import machine_info

    summary = {}
    for kind in ("simplex", "naive"):
        rs = [r for r in rows if r["kind"] == kind]
        summary[kind] = {k: statistics.median(r[k] for r in rs)
                         for k in ("ess_per_s", "min_ess", "divergences", "max_z", "sampling_s", "violation")}
    ratio = summary["simplex"]["ess_per_s"] / max(summary["naive"]["ess_per_s"], 1e-12)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    result = dict(machine=machine_info(), config=dict(warmup=warmup, samples=samples, chains=chains, repeats=repeats),
                  runs=rows, summary=summary, simplex_over_naive_ess_per_s=ratio)
    (out / f"sum_parametrisation{suffix}.json").write_text(json.dumps(result, indent=1))
    print(f"{'θ':<9}{'min-ESS/s':>11}{'min-ESS':>9}{'div.':>7}{'max |z|':>9}{'violation':>11}")
    for kind, s in summary.items():
        print(f"{kind:<9}{s['ess_per_s']:>11.3g}{s['min_ess']:>9.0f}{s['divergences']:>7.0f}{s['max_z']:>9.2f}"
              f"{s['violation']:>11.2g}")
    print(f"simplex / naive min-ESS/s: {ratio:.1f}x (medians of {repeats})")
    return result


if __name__ == "__main__":
    main()
