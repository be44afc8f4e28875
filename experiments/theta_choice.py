"""θ chosen by geometry (``ppinv.theta_choice``) on every model in ``models/``, side by side.

For each model, three parametrisations of the same exact posterior:

* **before** — ``ppinv.condition(model, data, choose_theta=False)``: the scheduler's fixed order
  of preferences (what ppinv did before the θ choice);
* **now** — ``ppinv.condition(model, data)``: the default, θ chosen at condition time;
* **best free=** — the best of the scheduler's θ and the hand-chosen ``free=`` tried for the
  model (:data:`HAND_FREE`), by min-ESS/s.

Measured: condition + plan time (the θ choice is part of it), divergences per 1,000 transitions,
max split r̂, min-ESS (over every latent component) per second of the whole run (compile
included), and the posterior means against the independent reference of
``experiments/metrics.py`` (closed form or quadrature; ``max |Δmean| / sd`` and the largest
z-score with the MCSE). Two variants with the same schedule are one run.

    python experiments/theta_choice.py            # ~5-10 min on 2 cores
    python experiments/theta_choice.py --quick    # smoke test
    python experiments/theta_choice.py --models kepler isotope_mixing

Writes ``experiments/results/theta_choice.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import experiments.metrics as M  # noqa: E402  (x64 on)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer import MCMC  # noqa: E402

import ppinv  # noqa: E402
from experiments.compare import SPECS  # noqa: E402
from experiments.machine import machine_info  # noqa: E402
from experiments.timing import timed  # noqa: E402
from models import INVERTIBLE_MODELS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: hand-chosen free= tried per model (the models' docstrings say why); "best" is the fastest of these
#: and the scheduler's own θ
HAND_FREE = {
    "kepler": (("e",),),
    "isotope_mixing": (("source",),),
    "enzyme_assay": (("Vmax", "Km"),),
    "manifold_toy": (("t0",),),
}
VARIANTS = ("before", "now", "best")


_BASES = {}


def model_and_data(mod):
    """``mod``'s NumPyro model and data, as its ``conditioned()`` conditions it (once per model)."""
    if mod not in _BASES:
        base = mod.conditioned()
        _BASES[mod] = (base.model, base.data)
    return _BASES[mod]


def conditioned(mod, variant):
    """A fresh conditioned model of ``mod`` for one variant (``"before"``, ``"now"`` or a free= tuple)."""
    model, data = model_and_data(mod)
    if variant == "before":
        return ppinv.condition(model, data, choose_theta=False)
    if variant == "now":
        return ppinv.condition(model, data)
    return ppinv.condition(model, data, free=list(variant), choose_theta=False)


def plan_seconds(mod, variant):
    """Seconds to condition and plan (trace, schedule, θ choice), and the conditioned model."""
    model_and_data(mod)  # the model traced once already (its first trace compiles helpers)
    t0 = time.perf_counter()
    cm = conditioned(mod, variant)
    cm.plan()
    return time.perf_counter() - t0, cm


def run_nuts(name, mod, cm, cfg, seed):
    latents = cm.plan().latents
    init = None
    if SPECS.get(name, {}).get("fixed_start"):
        one = mod.init_params(cm)
        init = jax.tree_util.tree_map(lambda v: jnp.stack([v] * cfg["chains"]), one)
    kernel = ppinv.infer.InverseNUTS(cm, max_tree_depth=cfg["max_tree_depth"])
    mcmc = MCMC(kernel, num_warmup=cfg["warmup"], num_samples=cfg["samples"], num_chains=cfg["chains"],
                chain_method="vectorized", progress_bar=False)
    with timed() as t:
        mcmc.run(jax.random.PRNGKey(seed), init_params=init)
        s = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(s)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    div = int(np.sum(np.asarray(extra["diverging"]))) if "diverging" in extra else 0
    res = dict(latents={n: np.asarray(s[n]) for n in latents}, weights=None, chains=cfg["chains"],
               wall_s=t.wall, compile_s=t.compile)
    m = M.metrics(name, res, M.closed_form_reference(name), cm)
    n_trans = cfg["chains"] * cfg["samples"]
    return dict(divergences_per_1000=1000.0 * div / n_trans, rhat=m["rhat"], ess_min=m["ess_min"],
                ess_per_s=m["ess_per_s"], ess_per_s_run=m["ess_per_s_run"], wall_s=t.wall, mean_err=m["mean_err"], z_max=m["z_max"],
                violation=m["violation"], means={k: np.mean(v.reshape(-1, *v.shape[2:]), 0).tolist()
                                                 for k, v in res["latents"].items()})


def schedule_key(cm):
    """The schedule's steps, whatever numbers its variables got in this trace."""
    return re.sub(r"\bv\d+:", "v:", cm.plan().schedule.describe())


def one_model(name, cfg):
    mod = INVERTIBLE_MODELS[name]
    row = dict(model=name)
    runs, keys = {}, {}
    for variant in ("before", "now") + tuple(HAND_FREE.get(name, ())):
        seconds, cm = plan_seconds(mod, variant)
        plan = cm.plan()
        choice = plan.theta_choice
        info = dict(plan_s=seconds, theta=list(plan.theta_sites.values()),
                    choice=str(choice) if choice is not None else None,
                    choice_s=choice.seconds if choice is not None else 0.0)
        key = schedule_key(cm)
        same = next((v for v, k in keys.items() if k == key), None)
        if same is not None:
            info.update({k: v for k, v in runs[same].items() if k not in info}, same_as=same)
        else:
            try:
                info.update(run_nuts(name, mod, cm, cfg, cfg["seed"]))
            except Exception as err:  # a variant that cannot be sampled is a result too
                info.update(error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        variant = variant if isinstance(variant, str) else f"free={list(variant)}"
        keys[variant] = key
        runs[variant] = info
        print(f"  {name:26s} {variant:6s} θ={info['theta']} plan {seconds:.2f}s "
              f"div/1000={info.get('divergences_per_1000', float('nan')):.1f} "
              f"ess/s={info.get('ess_per_s', float('nan')):.1f} err={info.get('mean_err', float('nan')):.3f}"
              + (f" (= {same})" if same else ""), flush=True)
    hand = [v for v in runs if v not in ("before", "now")]
    best = max(["before"] + hand, key=lambda v: _speed(runs[v]))
    row.update(runs={**runs, "best": {**runs[best], "label": best}}, best_free=None if best == "before" else best)
    return row


def _rate(r):
    """min-ESS/s of sampling, or of the whole run where sampling alone is not measurable (the
    summed compile stages, which nest, reach the wall time)."""
    run = r.get("ess_per_s_run", math.nan)
    return run if math.isfinite(run) else r.get("ess_per_s", math.nan)


def _speed(r):
    """Rank of a run for "best": at most 1 % divergent transitions first, then :func:`_rate`."""
    if "error" in r:
        return (0, 0.0)
    rate = _rate(r)
    return (r["divergences_per_1000"] <= 10.0, rate if math.isfinite(rate) else 0.0)


def _f(x, fmt="{:.3g}"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return fmt.format(x)


def markdown(rows, cfg, seconds):
    lines = [
        "# θ chosen by geometry: before vs now vs the best free=",
        "",
        f"Generated by `experiments/theta_choice.py` in {seconds:.0f} s on {machine_info().get('cpu', 'this machine')}. "
        f"InverseNUTS, {cfg['chains']} chains × ({cfg['warmup']} warm-up + {cfg['samples']} draws), seed "
        f"{cfg['seed']}, max tree depth {cfg['max_tree_depth']}. *before*: `choose_theta=False` (the "
        "scheduler's order); *now*: the default (θ chosen at condition time); *best*: the best hand-chosen "
        "`free=` tried, or the scheduler's θ (at most 1 % divergent, then the highest sampling ESS/s). *ESS/s*: "
        "min-ESS over every latent component per second of the whole run, compile included; *run*: per "
        "second of sampling (compile excluded); *err* is max |mean − reference| / "
        "reference sd, *z* the largest |mean − reference| / MCSE (— where no independent reference exists). "
        "*plan s*: condition + plan, θ choice included. ★: the best of the scheduler's θ (*before*) and the "
        "hand-chosen `free=` rows (at most 1 % divergent transitions first, then sampling ESS/s).",
        "",
        "| model | variant | θ | plan s | choice s | div/1000 | r̂ | ESS/s | ESS/s run | err | z |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        best = row["runs"]["best"]["label"]
        for variant in [v for v in row["runs"] if v != "best"]:
            r = row["runs"][variant]
            label = f"**{variant}** ★" if variant == best else variant
            same = f" (= {r['same_as']})" if r.get("same_as") else ""
            if "error" in r:
                lines.append(f"| {row['model']} | {label} | {', '.join(r['theta'])} | {r['plan_s']:.2f} | "
                             f"{r['choice_s']:.2f} | {r['error']} | | | | | |")
                continue
            lines.append(
                f"| {row['model']} | {label}{same} | {', '.join(r['theta'])} | {r['plan_s']:.2f} | {r['choice_s']:.2f} | "
                f"{_f(r.get('divergences_per_1000'), '{:.1f}')} | {_f(r.get('rhat'), '{:.3f}')} | "
                f"{_f(r.get('ess_per_s'), '{:.1f}')} | {_f(r.get('ess_per_s_run'), '{:.1f}')} | "
                f"{_f(r.get('mean_err'), '{:.3f}')} | {_f(r.get('z_max'), '{:.2f}')} |")
    lines += ["", "## Now against the best", "",
              "| model | now = best? | div/1000 now / best | ESS/s now ÷ best (sampling, else whole run) |", "|---|---|---|---|"]
    for row in rows:
        now, best = row["runs"]["now"], row["runs"]["best"]
        same = best.get("label") == "now" or now.get("same_as") == best.get("label")  # the same schedule
        ratio = 1.0 if same else _rate(now) / _rate(best)
        lines.append(f"| {row['model']} | {'yes' if same else 'no (' + best['label'] + ')'} | "
                     f"{_f(now.get('divergences_per_1000'), '{:.1f}')} / {_f(best.get('divergences_per_1000'), '{:.1f}')}"
                     f" | {_f(ratio, '{:.2f}')} |")
    changed = [row for row in rows if row["runs"]["now"].get("same_as") != "before"]
    lines += ["", "## Where the choice changed θ", ""]
    for row in changed:
        lines += [f"**{row['model']}**", "", "```", row["runs"]["now"]["choice"] or "", "```", ""]
    plan_before = sum(r["runs"]["before"]["plan_s"] for r in rows)
    plan_now = sum(r["runs"]["now"]["plan_s"] for r in rows)
    lines += ["## Cost", "",
              f"condition + plan over all {len(rows)} models: {plan_before:.1f} s before, {plan_now:.1f} s now "
              f"(θ choice {sum(r['runs']['now']['choice_s'] for r in rows):.1f} s of it).", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS), help="folder for theta_choice[_quick].{json,md}")
    args = p.parse_args(argv)
    cfg = dict(chains=2, warmup=100 if args.quick else 300, samples=100 if args.quick else 500, max_tree_depth=8,
               seed=args.seed)
    names = args.models or list(INVERTIBLE_MODELS)
    t0 = time.perf_counter()
    rows = []
    for name in names:
        print(name, flush=True)
        rows.append(one_model(name, cfg))
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    for row in rows:  # the draws' means are kept; the draws themselves are not written
        for r in row["runs"].values():
            r.pop("latents", None)
    (out / f"theta_choice{suffix}.json").write_text(json.dumps(dict(config=cfg, rows=rows, seconds=seconds),
                                                               indent=1, default=float))
    (out / f"theta_choice{suffix}.md").write_text(markdown(rows, cfg, seconds))
    print(markdown(rows, cfg, seconds))
    return rows


if __name__ == "__main__":
    main()
