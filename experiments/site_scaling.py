"""Cost in the number of sites (issue 13): a sum observed over N separate scalar sites.

The model written the common way, one scalar site per latent::

    xs = [numpyro.sample(f"x{i}", dist.Gamma(2.0, 1.0)) for i in range(N)]
    numpyro.deterministic("total", sum(xs))

conditioned on ``total = 2N`` and sampled with ``InverseNUTS`` (20 warm-up + 20
draws, one chain), against the same model as one vector site of N entries
(``Gamma(2, 1).expand([N])``, ``x.sum()``) for reference. Each (layout, N) runs in a
fresh process and records: plan time (``ppinv.condition`` + ``cm.plan()``), the
programs JAX compiles during ``MCMC.run`` (count, and seconds summed over its
compile events: tracing, lowering, XLA), wall and CPU seconds of ``MCMC.run``, and
the process's peak resident memory. The slope of log(time) against log(N) is fitted
per layout (1 = linear).

Usage::

    python experiments/site_scaling.py [--quick] [--sizes 10,25,...] [--budget-s S] [--out DIR]
    python experiments/site_scaling.py --plan-only [--sizes 100,400,1000,2000] [--repeats 3]

``--plan-only``: only ``ppinv.condition`` + ``plan()``, in a fresh process per (layout, N,
repeat), for the scalar sites, the vector site and a mixed model (a shared location, N/2
scalar LogNormal sites and one vector Gamma site of N/2 entries, their sum observed);
prints the median CPU seconds and the slope per layout, and writes nothing.

``--quick``: N = 10, 25, 50, 100. Sizes whose predicted run (the last one scaled
linearly) no longer fits in the remaining ``--budget-s`` (default 540 s) are skipped
and listed, and so is every N of a layout after one that took longer than
``--skip-after-s`` (default 200 s). Writes ``site_scaling[_quick].json``, ``.png`` and
``site_scaling[_quick]_sweep.md`` (``site_scaling.md`` holds the measurements kept by hand, one section each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10, 25, 50, 100, 200, 500, 1000, 2000)
QUICK = (10, 25, 50, 100)
LAYOUTS = ("sites", "vector")
ALPHA = 2.0


def _child(n, layout, warmup, samples):
    """One (layout, N) in this fresh process: the measurement as a dict."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(ROOT))
    import resource

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from numpyro.infer import MCMC

    import ppinv

    model = _model(n, layout)
    events = {"compile_s": 0.0, "programs": 0}

    def on_duration(event, duration, **_):
        if event.startswith("/jax/core/compile/"):
            events["compile_s"] += duration
        if event == "/jax/core/compile/backend_compile_duration":
            events["programs"] += 1

    t0, c0 = time.perf_counter(), time.process_time()
    cm = ppinv.condition(model, {"total": ALPHA * n})
    cm.plan()
    plan_s, plan_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    plan_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=warmup, num_samples=samples, progress_bar=False)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    w0, c0 = time.perf_counter(), time.process_time()
    mcmc.run(jax.random.PRNGKey(0))
    s = jax.block_until_ready(mcmc.get_samples())
    run_s, cpu_s = time.perf_counter() - w0, time.process_time() - c0
    x = s["x"] if layout == "vector" else np.stack([s[f"x{i}"] for i in range(n)], axis=-1)
    violation = float(np.max(np.abs(np.sum(x, axis=-1) - ALPHA * n)))
    return dict(layout=layout, n=n, plan_s=plan_s, plan_cpu_s=plan_cpu_s, plan_rss_gb=plan_rss_gb, run_s=run_s, run_cpu_s=cpu_s, warmup=warmup, samples=samples,
                peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, violation=violation, **events)


def _model(n, layout):
    import numpyro
    import numpyro.distributions as dist

    def model():
        if layout == "vector":
            total = numpyro.sample("x", dist.Gamma(ALPHA, 1.0).expand([n])).sum()
        elif layout == "mixed":
            mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
            scalars = [numpyro.sample(f"x{i}", dist.LogNormal(mu, 1.0)) for i in range(n // 2)]
            vector = numpyro.sample("v", dist.Gamma(ALPHA, 1.0).expand([n - n // 2]))
            total = sum(scalars) + vector.sum()
        else:
            total = sum(numpyro.sample(f"x{i}", dist.Gamma(ALPHA, 1.0)) for i in range(n))
        numpyro.deterministic("total", total)

    return model


def _child_plan(n, layout):
    """CPU seconds of ``ppinv.condition`` + ``plan()`` for one (layout, N), in this fresh process."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(ROOT))
    import jax

    jax.config.update("jax_enable_x64", True)
    import ppinv

    ppinv.condition(_model(2, "sites"), {"total": 2 * ALPHA}).plan()  # imports and first traces, not timed
    c0 = time.process_time()
    ppinv.condition(_model(n, layout), {"total": ALPHA * n}).plan()
    return dict(layout=layout, n=n, plan_cpu_s=time.process_time() - c0)


PLAN_LAYOUTS = ("sites", "vector", "mixed")
PLAN_SIZES = (100, 400, 1000, 2000)


def plan_sweep(sizes, layouts, repeats):
    """Median plan CPU seconds per (layout, N) over ``repeats`` fresh processes, and the slopes."""
    import numpy as np

    rows = []
    for layout in layouts:
        for n in sizes:
            runs = []
            for _ in range(repeats):
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-plan", str(n), layout],
                                     capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    raise RuntimeError(f"{layout} N={n} failed:\n{out.stderr[-4000:]}")
                runs.append(json.loads(out.stdout.strip().splitlines()[-1])["plan_cpu_s"])
            rows.append(dict(layout=layout, n=n, plan_cpu_s=float(np.median(runs)), runs=runs))
            print(f"{layout:6s} N={n:5d}: plan {rows[-1]['plan_cpu_s']:7.2f} CPU s (median of "
                  f"{', '.join(f'{r:.2f}' for r in runs)})", flush=True)
    for layout in layouts:
        pts = [(r["n"], r["plan_cpu_s"]) for r in rows if r["layout"] == layout]
        if len(pts) >= 2:
            slope = np.polyfit(np.log([n for n, _ in pts]), np.log([t for _, t in pts]), 1)[0]
            print(f"slope of log(plan CPU s) vs log(N), {layout}: {slope:.2f}")
    return rows


def _spawn(n, layout, warmup, samples, timeout):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), layout, "--warmup", str(warmup),
           "--samples", str(samples)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        raise RuntimeError(f"{layout} N={n} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def slopes(rows, key):
    """Slope of log(key) against log(N) per layout (over every measured N, and over N ≥ 50)."""
    import numpy as np

    out = {}
    for layout in LAYOUTS:
        pts = sorted((r["n"], r[key]) for r in rows if r["layout"] == layout and r[key] > 0)
        fits = {}
        for name, lo in (("all", 0), ("n_ge_50", 50)):
            sel = [(n, v) for n, v in pts if n >= lo]
            if len(sel) >= 2:
                fits[name] = float(np.polyfit(np.log([n for n, _ in sel]), np.log([v for _, v in sel]), 1)[0])
        out[layout] = fits
    return out


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = (("plan_s", "plan (s)"), ("compile_s", "compile during MCMC.run (s)"), ("run_s", "MCMC.run wall (s)"),
              ("peak_rss_gb", "peak RSS (GB)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (key, label) in zip(axes, panels):
        for layout, marker in zip(LAYOUTS, ("o-", "s--")):
            pts = sorted((r["n"], r[key]) for r in rows if r["layout"] == layout)
            what = "N scalar sites" if layout == "sites" else "one site of N"
            if pts:
                ax.plot(*zip(*pts), marker, label=f"{layout} ({what})")
        ref = sorted((r["n"], r[key]) for r in rows if r["layout"] == "sites")
        if ref:
            ns = np.array([ref[0][0], ref[-1][0]], float)
            ax.plot(ns, ref[0][1] * ns / ns[0], ":", color="gray", label="∝ N (from the first point)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Gamma(2, 1) latents, their sum observed: InverseNUTS 20 + 20 draws, fresh process per point")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", default=None, help="comma-separated N")
    p.add_argument("--layouts", default=None, help="comma-separated (default: sites,vector; with --plan-only also mixed)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--budget-s", type=float, default=540.0)
    p.add_argument("--skip-after-s", type=float, default=200.0,
                   help="skip the larger N of a layout after one that took longer than this")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--plan-only", action="store_true", help="only the plan's CPU seconds (see the module)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per point of --plan-only")
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-plan", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(int(args.child[0]), args.child[1], args.warmup, args.samples)))
        return None
    if args.child_plan:
        print(json.dumps(_child_plan(int(args.child_plan[0]), args.child_plan[1])))
        return None
    if args.plan_only:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(PLAN_SIZES)
        layouts = args.layouts.split(",") if args.layouts else list(PLAN_LAYOUTS)
        return plan_sweep(sizes, layouts, args.repeats)
    sys.path.insert(0, str(ROOT))
    from experiments.machine import machine_info

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK if args.quick else SIZES)
    layouts = args.layouts.split(",") if args.layouts else list(LAYOUTS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "site_scaling" + ("_quick" if args.quick else "")
    machine = machine_info()
    start = time.perf_counter()
    rows, skipped, last = [], [], {}

    def write():  # after every N, so that a stopped sweep leaves what it measured
        machine["loadavg_now"] = os.getloadavg()
        result = dict(
            machine=machine, sizes=sizes, warmup=args.warmup, samples=args.samples, rows=rows, skipped=skipped,
            slopes={k: slopes(rows, k) for k in SLOPE_KEYS},
        )
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
        (out / f"{stem}_sweep.md").write_text(markdown(result))
        if rows:
            plot(rows, out / f"{stem}.png")
        return result

    for n in sizes:
        for layout in layouts:
            left = args.budget_s - (time.perf_counter() - start)
            prev = last.get(layout)
            predicted = prev["wall"] * n / prev["n"] if prev else 0.0
            if prev and prev["wall"] > args.skip_after_s:
                skipped.append(dict(layout=layout, n=n, reason=f"N={prev['n']} took {prev['wall']:.0f} s "
                                                               f"(> {args.skip_after_s:.0f} s)"))
                continue
            if predicted > left or left <= 0:
                skipped.append(dict(layout=layout, n=n, reason=f"predicted {predicted:.0f} s, {max(left, 0):.0f} s "
                                                               "of the budget left"))
                continue
            t = time.perf_counter()
            row = _spawn(n, layout, args.warmup, args.samples, timeout=max(left, 1.0))
            last[layout] = dict(n=n, wall=time.perf_counter() - t)
            if row is None:
                skipped.append(dict(layout=layout, n=n, reason=f"stopped after {left:.0f} s (the budget left)"))
                continue
            rows.append(row)
            write()
            print(f"{layout:6s} N={n:5d}: plan {row['plan_s']:6.2f} s ({row['plan_cpu_s']:6.2f} s CPU), "
                  f"{row['programs']:3d} programs compiled in {row['compile_s']:6.1f} s, run {row['run_s']:6.1f} s "
                  f"wall / {row['run_cpu_s']:6.1f} s CPU, peak {row['peak_rss_gb']:.2f} GB, "
                  f"|Σx − s| {row['violation']:.1e}", flush=True)
    result = write()
    for key, fit in result["slopes"].items():
        print(f"slope of log({key}) vs log(N): {fit}")
    return result


SLOPE_KEYS = ("plan_s", "plan_cpu_s", "compile_s", "run_s", "run_cpu_s", "plan_rss_gb", "peak_rss_gb")


def markdown(result):
    m = result["machine"]
    lines = [
        "# Cost in the number of sites: a sum observed over N separate scalar sites",
        "",
        f"`xᵢ ~ Gamma({ALPHA:g}, 1)`, `Σ xᵢ = {ALPHA:g}N` observed; InverseNUTS {result['warmup']} + "
        f"{result['samples']} draws, one chain, a fresh process per (layout, N). `sites`: N scalar sites; "
        "`vector`: one site of N entries. Plan: `ppinv.condition` + `plan()`; compile: JAX's compile events "
        "during `MCMC.run` (tracing, lowering, XLA); peak RSS of the whole process.",
        "",
        f"Machine: {m.get('cpu')} ({m.get('usable_cores')} usable cores), jax {m.get('jax')}, numpyro "
        f"{m.get('numpyro')}; ppinv {m.get('ppinv_commit')}{' (modified)' if m.get('ppinv_dirty') else ''}; load "
        f"at start {tuple(round(x, 1) for x in m.get('loadavg_start') or ())}, now "
        f"{tuple(round(x, 1) for x in m.get('loadavg_now') or ())} (2 cores shared: CPU seconds are the steadier "
        "figures).",
        "",
        "| layout | N | plan s | plan CPU s | programs | compile s | run s | run CPU s | RSS after plan GB | peak RSS GB "
        "| max \|Σx − s\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(result["rows"], key=lambda r: (r["layout"], r["n"])):
        lines.append(f"| {r['layout']} | {r['n']} | {r['plan_s']:.2f} | {r['plan_cpu_s']:.2f} | {r['programs']} | "
                     f"{r['compile_s']:.1f} | {r['run_s']:.1f} | {r['run_cpu_s']:.1f} | {r['plan_rss_gb']:.2f} | "
                     f"{r['peak_rss_gb']:.2f} | {r['violation']:.1e} |")
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{s['layout']} N={s['n']} ({s['reason']})" for s in result["skipped"])]
    lines += ["", "Slopes of log(cost) against log(N) (1 = linear):", "", "| cost | layout | all N | N ≥ 50 |",
              "|---|---|---:|---:|"]
    for key, per in result["slopes"].items():
        for layout, fit in per.items():
            if fit:
                lines.append(f"| {key} | {layout} | {fit.get('all', float('nan')):.2f} | "
                             f"{fit.get('n_ge_50', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
