"""Comparison suite: ppinv's exact conditioning against soft constraints, hand-written inverses, Mici and ABC.

ONE command regenerates every result file (tables, JSON, plots)::

    python experiments/compare.py                      # full run (~30-50 min on 2 shared cores)
    python experiments/compare.py --quick              # smoke test: tiny sizes, seconds per model

Options: ``--models a,b`` and ``--methods m1,m2`` select subsets (method names below;
``soft`` selects all three ε), ``--out DIR`` (default ``experiments/results``),
``--repeats``, ``--chains``, ``--warmup``, ``--samples`` override the sizes.

For every model in ``models/`` (all but ``sat``) plus ``models/bilinear.py``, these methods
(where they apply) are run side by side in ONE process, interleaved repeat by repeat so
machine noise on the shared host hits them alike:

* ``ppinv``       — ``ppinv.infer.InverseNUTS`` on ``model.conditioned()`` (its own start from the PGF);
* ``ppinv_jump``  — ``InverseNUTS(jump_every=10)`` (models with separated modes: manifold_toy, logistic_map);
* ``ppinv_mh``    — ``ppinv.infer.InverseMH`` (sine — no continuous θ at all —, manifold_toy, logistic_map);
* ``soft_<ε>``    — stock ``numpyro.infer.NUTS`` on the *original* model with each exact observation
  replaced by the likelihood ``N(y_obs | f(x), ε²)`` (:func:`soft_condition`), ε ∈ {0.1, 0.01, 0.001};
* ``hand``        — a NumPyro model written by hand over the same θ with the hand-derived Jacobian
  term, run with stock NUTS (product_lognormal, bilinear, lotka_volterra, enzyme_assay, isotope_mixing);
* ``mici``        — Mici's constrained HMC (``mici.interface.sample_constrained_hmc_chains``, dynamic
  multinomial HMC, JAX derivatives, ``dens_wrt_hausdorff=False``: the target is the prior in the ambient
  space conditioned on ``constr(q) = 0``) — product_lognormal, bilinear, lotka_volterra;
  skipped with a message when ``mici`` is not installed (``pip install -e '.[bench]'``);
* ``abc``         — ABC-SMC with pyabc at a fixed simulation budget (product_lognormal, bilinear);
  skipped with a message when ``pyabc`` is not installed.

Metrics per (model, method, repeat), summarised as medians over repeats:

* ``ess_per_s``        — min over all latent components of the bulk ESS
  (``numpyro.diagnostics.effective_sample_size`` over chains) per second of wall time of the whole run,
  INCLUDING compilation and initialisation (ppinv: ``condition`` + planning + PGF start + MCMC);
* ``ess_per_s_run``    — the same ESS per second of wall time minus JAX compile time (jaxpr tracing,
  lowering and XLA compilation, summed from ``jax.monitoring`` events during the run);
* ``violation``        — max |f(x) − y_obs| over all draws (float64; ``ppinv.diagnostics.constraint_violation``);
* ``mean_err`` / ``sd_err`` — max over components of |mean − ref mean| / ref sd and |sd / ref sd − 1|
  against the closed form (product_lognormal, linear_gaussian, gamma_sum, sine, manifold_toy
  [quadrature], bilinear [quadrature], kepler [quadrature], enzyme_assay [quadrature], isotope_mixing
  [quadrature], village_totals, stick_breaking_abundance) or else a long ppinv reference run (4 × 4000 draws, untimed);
  ``z_max`` — max |mean − ref mean| / √(MCSE² + MCSE_ref²);
* ``rhat``             — max split R-hat over latent components; ``divergences`` — total over chains.

Fairness notes: the soft and hand-written baselines and Mici start every chain at a point ON the
constraint set (found with ppinv's PGF, outside their timing) — a gift they need (a random start with
ε = 0.001 spends its warm-up finding the manifold); ppinv finds its own start inside its timing.
All NumPyro methods use ``chain_method="vectorized"`` (one compiled program for all chains).
Each repeat starts cold (``jax.clear_caches()``), so every repeat includes compilation.

Writes to ``--out``: ``compare[_quick].csv`` (one row per run), ``compare_summary[_quick].csv``
(medians), ``compare[_quick].json`` (everything, with the machine), ``compare_ess[_quick].png``
(ESS/s bar chart, log scale), ``manifold[_quick].png`` (the README picture: product model a·b = y,
ppinv beside soft NUTS) and ``compare[_quick].md`` (the tables and the goals).

Modules: this file holds the configuration and the loop over models, methods and repeats;
``compare_specs.py`` the dispatch table (:data:`SPECS`: which methods run on which model),
``compare_runs.py`` the runners, ``compare_checks.py`` the re-checked ppinv problems,
``baselines.py`` the alternatives, ``metrics.py`` the references and measurements,
``compare_report.py`` summaries, goals, tables and plots, ``timing.py`` the clocks every
experiment script shares.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from tqdm.auto import tqdm  # noqa: E402

from experiments.baselines import (  # noqa: E402,F401  (hand_*: lv_gradient_cost.py reads them here)
    abc_available, hand_bilinear, hand_enzyme_assay, hand_isotope_mixing, hand_lotka_volterra, hand_product_lognormal,
    mici_available,
)
from experiments.compare_checks import ppinv_checks  # noqa: E402
from experiments.compare_report import (  # noqa: E402
    RUN_FIELDS, SUMMARY_FIELDS, goals, markdown, plot_ess, plot_manifold, summarise,
)
from experiments.compare_runs import reference_from_run, run_method  # noqa: E402
from experiments.compare_specs import ALL_METHODS, MODULES, SOFT, SPECS, methods_for  # noqa: E402,F401  (SPECS: theta_choice.py)
from experiments.machine import machine_info  # noqa: E402
from experiments.metrics import closed_form_reference, metrics  # noqa: E402
from experiments.timing import PERF, write_csv as _write_csv  # noqa: E402


# =====================================================================================
# main
# =====================================================================================
def config(args):
    quick = args.quick
    cfg = dict(
        quick=quick,
        repeats=1 if quick else 3,
        chains=2 if quick else 4,
        warmup=100 if quick else 1000,
        samples=100 if quick else 1000,
        max_tree_depth=10,
        jump_every=10,
        soft_small_eps=(100, 100) if quick else (500, 500),
        mh_sizes=(200, 200) if quick else (5000, 5000),
        mici_sizes={"default": (2, 50, 50) if quick else (4, 500, 500),
                    "lotka_volterra": (2, 20, 20) if quick else (2, 100, 150)},
        abc_budget=2000 if quick else 40000,
        abc_population=200 if quick else 1000,
        ref_chains=2 if quick else 4,
        ref_warmup=100 if quick else 1000,
        ref_samples=200 if quick else 2500,
        ref_mh_sizes=(500, 500) if quick else (20000, 20000),
        slow_repeats=1,
        steady=not quick,  # each steady-state measurement compiles the kernel step once more (~2-5 s)
        steady_max_s=30.0,
    )
    for k in ("repeats", "chains", "warmup", "samples"):
        v = getattr(args, k)
        if v is not None:
            cfg[k] = v
    return cfg



def n_repeats(name, method, cfg):
    """Full repeats for ppinv, the hand-written inverse and soft NUTS at ε = 0.01 (the goals' comparisons);
    one run for the slow or secondary baselines (soft NUTS at ε = 0.1 / 0.001, soft NUTS on models where
    it hits the tree-depth cap every iteration, Mici, ABC)."""
    if method in ("ppinv", "ppinv_jump", "ppinv_mh", "hand"):
        return cfg["repeats"]
    if method == "soft_0.01" and not SPECS[name].get("soft_slow"):
        return cfg["repeats"]
    return min(cfg["repeats"], cfg["slow_repeats"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    p.add_argument("--models", default=None, help=f"comma-separated subset of {','.join(MODULES)}")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(ALL_METHODS)} (or 'soft')")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output folder")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--chains", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--no-checks", action="store_true", help="skip the ppinv problem reproducers")
    p.add_argument("--steady", action="store_true", help="measure steady-state ESS/s also with --quick")
    args = p.parse_args(argv)
    cfg = config(args)
    cfg["steady"] = cfg["steady"] or args.steady
    t_start = PERF()

    names = list(MODULES) if not args.models else [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [n for n in names if n not in MODULES]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {list(MODULES)}")
    wanted = None
    if args.methods:
        wanted = set()
        for m in args.methods.split(","):
            m = m.strip()
            if m == "soft":
                wanted.update(SOFT)
            elif m in ALL_METHODS:
                wanted.add(m)
            elif m:
                p.error(f"unknown method {m!r}; choose from {ALL_METHODS} or 'soft'")
    plan = [(n, m) for n in names for m in methods_for(n) if wanted is None or m in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if cfg["quick"] else ""
    machine = machine_info()
    for flag, avail, what in (("mici", mici_available(), "mici"), ("abc", abc_available(), "pyabc")):
        if any(m == flag for _, m in plan) and not avail:
            print(f"[compare] {what} is not installed: the '{flag}' runs are skipped "
                  f"(pip install -e '.[bench]' to include them).", file=sys.stderr)

    need_ref = [n for n in names if closed_form_reference(n) is None and any(nn == n for nn, _ in plan)]
    reps = {(n, m): n_repeats(n, m, cfg) for n, m in plan}
    total = len(need_ref) + sum(reps.values())
    rows, references, ref_desc, draws_for_plot = [], {}, {}, {}
    workdir = tempfile.mkdtemp(prefix="ppinv_compare_")
    checks = ppinv_checks() if (not cfg["quick"] and "bilinear" in names and not args.no_checks) else []
    with tqdm(total=total, desc="compare", unit="run", dynamic_ncols=True, disable=args.no_progress) as bar:
        for n in names:
            cf = closed_form_reference(n)
            if cf is not None:
                references[n] = cf
                ref_desc[n] = {"manifold_toy": "quadrature of the exact density along the curve",
                               "bilinear": "quadrature over (x1, x2)",
                               "kepler": "quadrature over e",
                               "enzyme_assay": "quadrature over (Vmax, Km)",
                               "isotope_mixing": "quadrature over the simplex of f",
                               "binding_equilibrium": "quadrature over (K_A, K_B)",
                               "vote_shares": "quadrature over the house effects",
                               "drifter_currents": "closed form (a mixture over the 8 directions)"}.get(n, "closed form")
        for n in need_ref:
            bar.set_postfix_str(f"{n}: reference run")
            try:
                references[n], ref_desc[n] = reference_from_run(n, cfg)
            except Exception as err:  # no reference: errors are reported as '–'
                ref_desc[n] = f"reference run FAILED ({type(err).__name__}: {str(err)[:200]})"
                traceback.print_exc()
            bar.update(1)
        # interleave: repeat r of every (model, method) before repeat r + 1 of any
        for r in range(max(reps.values()) if reps else 0):
            for n, m in plan:
                if r >= reps[(n, m)]:
                    continue
                bar.set_postfix_str(f"{n} / {m} / repeat {r}")
                jax.clear_caches()
                row = dict(model=n, method=m, repeat=r)
                try:
                    res = run_method(n, m, cfg, seed=r, workdir=workdir)
                    if "skipped" in res:
                        row["skipped"] = res["skipped"]
                        row["notes"] = res["skipped"]
                    else:
                        row.update({k: v for k, v in res.items() if k not in ("latents", "weights")})
                        row.update(metrics(n, res, references.get(n), MODULES[n].conditioned()))
                        if n == "product_lognormal" and r == 0:
                            draws_for_plot[m] = {k: np.asarray(v) for k, v in res["latents"].items()}
                except Exception as err:  # keep going; the error is reported in the tables
                    row["error"] = f"{type(err).__name__}: {err}"
                    row["notes"] = "ERROR " + row["error"][:300]
                    traceback.print_exc()
                rows.append(row)
                bar.update(1)
    elapsed = PERF() - t_start
    # raw rows first, so that a failure below loses nothing measured
    (out / f"compare_runs{suffix}.json").write_text(json.dumps(dict(machine=machine, config=cfg, runs=rows),
                                                               indent=1, default=_json_default))
    summary = summarise(rows)
    goal_rows = goals(summary)
    ref_json = {n: {k: [np.ravel(np.asarray(x, float)).tolist() for x in v] for k, v in ref.items()}
                for n, ref in references.items()}
    result = dict(machine=machine, config=cfg, runs=rows, summary=summary, goals=goal_rows, ppinv_checks=checks,
                  references=ref_json, reference_source=ref_desc, elapsed_s=elapsed)
    (out / f"compare{suffix}.json").write_text(json.dumps(result, indent=1, default=_json_default))
    _write_csv(out / f"compare{suffix}.csv", rows, RUN_FIELDS)
    _write_csv(out / f"compare_summary{suffix}.csv", summary, SUMMARY_FIELDS)
    (out / f"compare{suffix}.md").write_text(markdown(machine, cfg, summary, goal_rows, ref_desc, elapsed, checks))
    if any(s.get("repeats") for s in summary):
        plot_ess(summary, out / f"compare_ess{suffix}.png", machine)
    if draws_for_plot:
        plot_manifold(draws_for_plot, out / f"manifold{suffix}.png", machine)
    print((out / f"compare{suffix}.md").read_text())
    return result


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    main()
