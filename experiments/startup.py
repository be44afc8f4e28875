"""Start-up cost from a cold process: ppinv against NUTS on a hand-written inverse and soft NUTS.

The benchmark ``x ∈ R³ ~ N(0, I), observe x0 + x1·x2 = 1`` (``models/bilinear.py``),
1,000 warm-up + 2,000 draws, 2 sequential chains, x64. Each measurement runs in a
fresh Python process (a subprocess of this script), so compilation is paid as a
user's script pays it; the clock runs from ``mcmc.run`` to the samples being
ready. Methods:

* ``ppinv``     — ``InverseNUTS(ppinv.condition(model, {"y": 1}))``;
* ``hand``      — stock NUTS on the inverse written by hand (θ = x1, x2; x0 = 1 − x1 x2);
* ``soft_0.01`` — stock NUTS on the original model with the observation replaced by
  ``N(1 | x0 + x1 x2, 0.01²)``.

and three cache modes, for each method:

* ``none``  — no persistent compilation cache;
* ``fill``  — ``ppinv.enable_compilation_cache(dir)`` on an empty directory (first run);
* ``warm``  — the same directory again, in a new process (second run).

Each (method, mode) is repeated (fresh cache directory per repeat) and the median
reported: wall seconds, process CPU seconds, XLA compile seconds and programs
compiled, cache hits, min-ESS over x0, x1, x2 and min-ESS/s including compilation.

Usage::

    python experiments/startup.py [--quick] [--repeats 3] [--methods ppinv,hand,soft_0.01]
                                  [--modes none,fill,warm] [--out experiments/results]

Writes ``startup[_quick].csv`` (every run), ``startup[_quick].md`` (medians and
ratios) and ``startup[_quick].json`` (both, with the machine record).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ppinv", "hand", "soft_0.01")
MODES = ("none", "fill", "warm")
FIELDS = ("method", "mode", "repeat", "wall_s", "cpu_s", "compile_s", "programs", "cache_hits", "min_ess",
          "ess_per_s", "ess_per_cpu_s", "violation", "divergences", "warmup", "samples", "chains", "loadavg")


# =====================================================================================
# one measurement, in a fresh process
# =====================================================================================
def _child(method, cache_dir, warmup, samples, chains):
    """Run one method once in this (fresh) process; returns the measurement as a dict."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(ROOT))
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC, NUTS

    import ppinv
    from experiments.baselines import hand_bilinear, soft_condition
    from models import bilinear

    if cache_dir:
        ppinv.enable_compilation_cache(cache_dir)
    events = {"compile_s": 0.0, "programs": 0, "cache_hits": 0}

    def on_duration(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":  # a compilation or a cache read
            events["compile_s"] += duration
            events["programs"] += 1

    def on_event(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            events["cache_hits"] += 1

    if method == "ppinv":
        kernel = ppinv.infer.InverseNUTS(bilinear.conditioned())
    elif method == "hand":
        kernel = NUTS(hand_bilinear())
    elif method.startswith("soft_"):
        kernel = NUTS(soft_condition(bilinear.model, bilinear.DATA, float(method.split("_", 1)[1])))
    else:
        raise ValueError(f"unknown method {method!r}")
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method="sequential",
                progress_bar=False)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    w0, c0 = time.perf_counter(), time.process_time()
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("diverging",))
    s = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    x = np.stack([np.asarray(s[n]) for n in ("x0", "x1", "x2")], axis=-1)
    min_ess = float(np.min(effective_sample_size(x)))
    violation = float(np.max(np.abs(x[..., 0] + x[..., 1] * x[..., 2] - bilinear.Y)))
    divergences = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    return dict(method=method, wall_s=wall, cpu_s=cpu, min_ess=min_ess, ess_per_s=min_ess / wall,
                ess_per_cpu_s=min_ess / cpu,
                violation=violation, divergences=divergences, warmup=warmup, samples=samples, chains=chains,
                **events)


def _spawn(method, cache_dir, warmup, samples, chains):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--cache-dir", cache_dir or "",
           "--warmup", str(warmup), "--samples", str(samples), "--chains", str(chains)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{method} ({'cache' if cache_dir else 'no cache'}) failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# =====================================================================================
# the experiment
# =====================================================================================
def run(methods, modes, repeats, warmup, samples, chains, progress=print):
    rows = []
    for r in range(repeats):
        for method in methods:  # methods interleaved, so a change of machine load hits all alike
            with tempfile.TemporaryDirectory(prefix="ppinv-cache-") as cache:
                for mode in modes:
                    row = _spawn(method, cache if mode != "none" else None, warmup, samples, chains)
                    row.update(mode=mode, repeat=r, loadavg=round(os.getloadavg()[0], 2))
                    rows.append(row)
                    progress(f"{method:10s} {mode:5s} #{r}: {row['wall_s']:6.2f} s wall, {row['programs']:3d} programs, "
                             f"{row['cache_hits']:3d} cache hits, min-ESS/s {row['ess_per_s']:8.1f}")
    return rows


def summarise(rows):
    keys = ("wall_s", "cpu_s", "compile_s", "programs", "cache_hits", "min_ess", "ess_per_s", "ess_per_cpu_s",
            "violation")
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        for mode in dict.fromkeys(r["mode"] for r in rows):
            rs = [r for r in rows if r["method"] == method and r["mode"] == mode]
            if rs:
                out.append(dict(method=method, mode=mode, repeats=len(rs),
                                **{k: statistics.median(r[k] for r in rs) for k in keys}))
    return out


def ratios(summary):
    by = {(s["method"], s["mode"]): s for s in summary}
    out = []
    for mode in dict.fromkeys(s["mode"] for s in summary):
        p = by.get(("ppinv", mode))
        for other in ("hand", "soft_0.01"):
            o = by.get((other, mode))
            if p and o and o["ess_per_s"] > 0:
                out.append(dict(mode=mode, versus=other, ratio=p["ess_per_s"] / o["ess_per_s"],
                                ratio_cpu=p["ess_per_cpu_s"] / o["ess_per_cpu_s"]))
    return out


def write_markdown(path, summary, rat, machine, cfg):
    lines = [
        "# Start-up: min-ESS/s including compilation, from cold processes",
        "",
        f"Benchmark: x ∈ R³ ~ N(0, I), observe x0 + x1·x2 = 1; {cfg['warmup']:,} warm-up + {cfg['samples']:,} draws, "
        f"{cfg['chains']} sequential chains, x64; medians of {cfg['repeats']} runs, each in a fresh process; the clock "
        "runs from `mcmc.run` to the samples. Cache modes: `none` (no persistent cache), `fill` (first run, "
        "`ppinv.enable_compilation_cache` on an empty directory), `warm` (second run on that directory).",
        "",
        f"Machine: {machine.get('cpu')} ({machine.get('usable_cores')} usable cores), {machine.get('device')}, "
        f"jax {machine.get('jax')}, numpyro {machine.get('numpyro')}, load at start {machine.get('loadavg_start')}; "
        f"ppinv {machine.get('ppinv_commit')}{' (modified)' if machine.get('ppinv_dirty') else ''}.",
        "",
        "| method | cache | wall s | CPU s | XLA compile s (wall) | programs | cache hits | min-ESS | min-ESS/s "
        "| min-ESS per CPU s | max violation |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(f"| {s['method']} | {s['mode']} | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | {s['compile_s']:.2f} | "
                     f"{s['programs']:.0f} | {s['cache_hits']:.0f} | {s['min_ess']:.0f} | {s['ess_per_s']:.1f} | "
                     f"{s['ess_per_cpu_s']:.1f} | {s['violation']:.1e} |")
    if rat:
        lines += ["", "ppinv's min-ESS/s (incl. compilation) over the others', same cache mode (per wall second "
                  "and per CPU second of the process; on a loaded machine the CPU figure is the steadier one):", "",
                  "| cache | versus | ratio (wall) | ratio (CPU) |", "|---|---|---:|---:|"]
        lines += [f"| {r['mode']} | {r['versus']} | {r['ratio']:.2f}× | {r['ratio_cpu']:.2f}× |" for r in rat]
    lines += ["", "Soft NUTS samples a different (approximate) posterior: its violation of the constraint is the "
              "price of ε; ppinv's and the hand-written inverse's are round-off.", ""]
    Path(path).write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--chains", type=int, default=2)
    args = p.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (20 if args.quick else 1000)
    samples = args.samples if args.samples is not None else (20 if args.quick else 2000)
    if args.child:
        print(json.dumps(_child(args.child, args.cache_dir or None, warmup, samples, args.chains)))
        return None
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    methods = [m for m in args.methods.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    unknown = (set(methods) - set(METHODS)) | (set(modes) - set(MODES))
    if unknown:
        p.error(f"unknown methods/modes {sorted(unknown)}; methods: {METHODS}, modes: {MODES}")
    sys.path.insert(0, str(ROOT))
    from experiments.machine import machine_info

    machine = machine_info()
    rows = run(methods, modes, repeats, warmup, samples, args.chains)
    summary = summarise(rows)
    rat = ratios(summary)
    cfg = dict(warmup=warmup, samples=samples, chains=args.chains, repeats=repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    from experiments.timing import write_csv

    write_csv(out / f"startup{suffix}.csv", rows, FIELDS)
    write_markdown(out / f"startup{suffix}.md", summary, rat, machine, cfg)
    (out / f"startup{suffix}.json").write_text(json.dumps(dict(machine=machine, config=cfg, runs=rows,
                                                              summary=summary, ratios=rat), indent=1))
    return dict(runs=rows, summary=summary, ratios=rat)


if __name__ == "__main__":
    main()
