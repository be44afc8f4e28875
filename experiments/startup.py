"""Start-up cost from a cold process: ppinv against NUTS on a hand-written inverse and soft NUTS.

Four models (issue 13), each with ppinv, a hand-written inverse and soft NUTS (ε = 0.01):

* ``bilinear`` — x ∈ R³ ~ N(0, I), observe x0 + x1·x2 = 1 (``models/bilinear.py``);
* ``product_lognormal`` — a, b ~ LogNormal(0, 1), observe a·b = 2;
* ``lotka_volterra`` — 4 rates' noise and 100 step noises, the whole 50-step path observed;
* ``network_tomography`` — 100 positive flows seen through 30 link loads.

Each measurement runs in a fresh Python process (a subprocess of this script), so
compilation is paid as a user's script pays it; the clock runs from ``mcmc.run`` to
the samples being ready. Methods:

* ``ppinv``     — ``InverseNUTS(ppinv.condition(model, data))``;
* ``hand``      — stock NUTS on the inverse written by hand (``experiments/baselines.py``);
* ``soft_0.01`` — stock NUTS on the original model with the observation replaced by
  ``N(y | f(x), 0.01²)``.

Starts: where a method's own start works (bilinear, product-of-lognormals; ppinv's PGF
start and the hand inverse's prior draw on Lotka–Volterra) it is part of the timed run.
Soft NUTS on Lotka–Volterra (prior draws overflow) and every method on network tomography
(ppinv's PGF start fails there, see ``models/network_tomography.py``) start at the latents
that generated the data, given for free: computed before the clock starts.

Three cache modes, for each method:

* ``none``  — no persistent compilation cache;
* ``fill``  — ``ppinv.enable_compilation_cache(dir)`` on an empty directory (first run);
* ``warm``  — the same directory again, in a new process (second run).

Each (model, method, mode) is repeated (fresh cache directory per repeat) and the median
reported: wall seconds, process CPU seconds, programs compiled (or read from the cache),
their XLA compile wall and CPU seconds, cache hits, min-ESS over every latent and min-ESS/s
including compilation.

Usage::

    python experiments/startup.py [--quick] [--models bilinear,lotka_volterra,...] [--repeats 3]
                                  [--methods ppinv,hand,soft_0.01] [--modes none,fill,warm]
                                  [--out experiments/results]

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
MODELS = ("bilinear", "product_lognormal", "lotka_volterra", "network_tomography")
METHODS = ("ppinv", "hand", "soft_0.01")
MODES = ("none", "fill", "warm")
#: (warm-up, draws) per chain; soft NUTS on the two large models runs up to 2¹⁰ leapfrog steps per draw
SIZES = {"bilinear": (1000, 2000), "product_lognormal": (1000, 2000), "lotka_volterra": (500, 1000),
         "network_tomography": (500, 1000)}
QUICK_SIZES = (20, 20)
FIELDS = ("model", "method", "mode", "repeat", "wall_s", "cpu_s", "compile_s", "compile_cpu_s", "programs",
          "cache_hits", "min_ess", "ess_per_s", "ess_per_cpu_s", "violation", "divergences", "warmup", "samples",
          "chains", "loadavg")


# =====================================================================================
# the models: kernel, latents, constraint violation and start per method
# =====================================================================================
def _setup(model_name, method):
    """``(kernel, init_params or None, latents(samples) -> {name: (chains, draws, ...)}, violation(latents))``.

    Everything here runs before the clock starts: building a kernel is cheap (no
    compilation), and a start given for free (``init_params``) is computed here.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import NUTS, init_to_value
    from numpyro.infer.util import unconstrain_fn

    import models
    import ppinv
    from experiments import baselines

    mod = models.bilinear if model_name == "bilinear" else getattr(models, model_name)
    chains_init = None

    def stacked(model, values, n):  # init_params of stock NUTS: unconstrained values, one row per chain
        u = unconstrain_fn(model, (), {}, {k: jnp.asarray(v) for k, v in values.items()})
        return {k: jnp.stack([v] * n) for k, v in u.items()}

    if model_name == "bilinear":
        names = ("x0", "x1", "x2")
        hand = baselines.hand_bilinear
        violation = lambda lat: np.abs(lat["x0"] + lat["x1"] * lat["x2"] - mod.Y)
        true_start = None
    elif model_name == "product_lognormal":
        names = ("a", "b")
        hand = baselines.hand_product_lognormal
        violation = lambda lat: np.abs(lat["a"] * lat["b"] - mod.Y)
        true_start = None
    elif model_name == "lotka_volterra":
        names = ("u_z", "u_n")
        hand = baselines.hand_lotka_volterra
        y = np.asarray(mod.DATA["y"])
        sim = jax.jit(jax.vmap(jax.vmap(lambda uz, un: mod.simulate(jnp.exp(-2.0 + uz), un))))
        violation = lambda lat: np.abs(np.asarray(sim(lat["u_z"], lat["u_n"])) - y) / np.abs(y)
        true_start = {"soft_0.01": mod.true_latents()}  # soft NUTS from a prior draw overflows
    elif model_name == "network_tomography":
        names = ("x",)
        hand = baselines.hand_network_tomography
        a, y = mod.routing_matrix(), np.asarray(mod.DATA["y"])
        violation = lambda lat: np.abs(lat["x"] @ a.T - y)
        lat0 = mod.true_latents()
        true_start = {"soft_0.01": lat0, "hand": baselines.hand_network_tomography_theta(lat0), "ppinv": lat0}
    else:
        raise ValueError(f"unknown model {model_name!r}; models: {MODELS}")

    start = (true_start or {}).get(method)
    if method == "ppinv":
        cm = mod.conditioned()
        kernel = ppinv.infer.InverseNUTS(cm)
        if start is not None:
            chains_init = models.pgf_init(cm, start)
    elif method == "hand":
        model = hand()
        kernel = NUTS(model, init_strategy=init_to_value(values=start)) if start is not None else NUTS(model)
    elif method.startswith("soft_"):
        model = baselines.soft_condition(mod.model, mod.DATA, float(method.split("_", 1)[1]))
        kernel = NUTS(model, init_strategy=init_to_value(values=start)) if start is not None else NUTS(model)
    else:
        raise ValueError(f"unknown method {method!r}")
    if start is not None and method != "ppinv":
        chains_init = ("unconstrained", model, start)
    return kernel, chains_init, names, violation, stacked


class _CompileMeter:
    """Programs compiled (or read from the persistent cache), their wall and process-CPU seconds.

    Wraps ``jax._src.compiler.compile_or_get_cached``, the one entry every jitted program
    goes through on its way to an executable (XLA compile or cache read).
    """

    def __init__(self):
        from jax._src import compiler

        self.programs, self.wall, self.cpu, self.hits = 0, 0.0, 0.0, 0
        inner = compiler.compile_or_get_cached

        def metered(*args, **kwargs):
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.programs += 1
                self.wall += time.perf_counter() - w0
                self.cpu += time.process_time() - c0

        compiler.compile_or_get_cached = metered

    def on_event(self, event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            self.hits += 1


# =====================================================================================
# one measurement, in a fresh process
# =====================================================================================
def _child(model_name, method, cache_dir, warmup, samples, chains):
    """Run one (model, method) once in this (fresh) process; returns the measurement as a dict."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(ROOT))
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC

    import ppinv

    if cache_dir:
        ppinv.enable_compilation_cache(cache_dir)
    kernel, chains_init, names, violation, stacked = _setup(model_name, method)
    if isinstance(chains_init, tuple):  # a free start for stock NUTS: unconstrained, one row per chain
        chains_init = stacked(chains_init[1], chains_init[2], chains)
    elif chains_init is not None:  # θ of the conditioned model (constrained), one row per chain
        chains_init = jax.tree_util.tree_map(lambda v: np.stack([np.asarray(v)] * chains), chains_init)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method="sequential",
                progress_bar=False)
    meter = _CompileMeter()  # installed after the free start: only mcmc.run's programs are counted
    jax.monitoring.register_event_listener(meter.on_event)
    w0, c0 = time.perf_counter(), time.process_time()
    mcmc.run(jax.random.PRNGKey(0), init_params=chains_init, extra_fields=("diverging",))
    s = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    lat = {n: np.asarray(s[n]) for n in names}
    flat = np.concatenate([v.reshape(v.shape[:2] + (-1,)) for v in lat.values()], axis=-1)
    min_ess = float(np.min(effective_sample_size(flat)))
    divergences = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    return dict(model=model_name, method=method, wall_s=wall, cpu_s=cpu, min_ess=min_ess, ess_per_s=min_ess / wall,
                ess_per_cpu_s=min_ess / cpu, violation=float(np.max(violation(lat))), divergences=divergences,
                warmup=warmup, samples=samples, chains=chains, programs=meter.programs, compile_s=meter.wall,
                compile_cpu_s=meter.cpu, cache_hits=meter.hits)


def _spawn(model_name, method, cache_dir, warmup, samples, chains):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", model_name, method, "--cache-dir",
           cache_dir or "", "--warmup", str(warmup), "--samples", str(samples), "--chains", str(chains)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{model_name} {method} ({'cache' if cache_dir else 'no cache'}) failed:\n"
                           f"{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# =====================================================================================
# the experiment
# =====================================================================================
def run(model_names, methods, modes, repeats, sizes, chains, progress=print, on_row=None):
    """Every (model, repeat, method, mode) in a fresh process; ``on_row(rows)`` after each (partial results)."""
    rows = []
    for model_name in model_names:
        warmup, samples = sizes[model_name]
        for r in range(repeats):
            for method in methods:  # methods interleaved, so a change of machine load hits all alike
                with tempfile.TemporaryDirectory(prefix="ppinv-cache-") as cache:
                    for mode in modes:
                        row = _spawn(model_name, method, cache if mode != "none" else None, warmup, samples, chains)
                        row.update(mode=mode, repeat=r, loadavg=round(os.getloadavg()[0], 2))
                        rows.append(row)
                        if on_row is not None:
                            on_row(rows)
                        progress(f"{model_name:18s} {method:10s} {mode:5s} #{r}: {row['wall_s']:6.2f} s wall, "
                                 f"{row['cpu_s']:6.2f} s CPU, {row['programs']:3d} programs ({row['compile_cpu_s']:5.2f}"
                                 f" s CPU), {row['cache_hits']:3d} cache hits, min-ESS {row['min_ess']:6.0f}, "
                                 f"min-ESS/s {row['ess_per_s']:8.1f}, load {row['loadavg']}")
    return rows


SUMMARY_KEYS = ("wall_s", "cpu_s", "compile_s", "compile_cpu_s", "programs", "cache_hits", "min_ess", "ess_per_s",
                "ess_per_cpu_s", "violation", "divergences", "loadavg")


def summarise(rows):
    out = []
    for model_name in dict.fromkeys(r["model"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            for mode in dict.fromkeys(r["mode"] for r in rows):
                rs = [r for r in rows if (r["model"], r["method"], r["mode"]) == (model_name, method, mode)]
                if rs:
                    out.append(dict(model=model_name, method=method, mode=mode, repeats=len(rs),
                                    warmup=rs[0]["warmup"], samples=rs[0]["samples"],
                                    **{k: statistics.median(r[k] for r in rs) for k in SUMMARY_KEYS}))
    return out


def ratios(summary):
    by = {(s["model"], s["method"], s["mode"]): s for s in summary}
    out = []
    for model_name, mode in dict.fromkeys((s["model"], s["mode"]) for s in summary):
        p = by.get((model_name, "ppinv", mode))
        for other in ("hand", "soft_0.01"):
            o = by.get((model_name, other, mode))
            if p and o and o["ess_per_s"] > 0:
                out.append(dict(model=model_name, mode=mode, versus=other, ratio=p["ess_per_s"] / o["ess_per_s"],
                                ratio_cpu=p["ess_per_cpu_s"] / o["ess_per_cpu_s"], cpu_ratio=o["cpu_s"] / p["cpu_s"],
                                ess_ratio=p["min_ess"] / o["min_ess"], repeats=min(p["repeats"], o["repeats"])))
    return out


def write_markdown(path, summary, rat, machine, cfg):
    lines = [
        "# Start-up: min-ESS/s including compilation, from cold processes",
        "",
        "Models: bilinear (x ∈ R³ ~ N(0, I), observe x0 + x1·x2 = 1), product of log-normals (a·b = 2), "
        "Lotka–Volterra (50 steps observed, 104 latents) and network tomography (100 flows, 30 links). "
        f"{cfg['chains']} sequential chains, x64; medians of {cfg['repeats']} runs, each in a fresh process; the "
        "clock runs from `mcmc.run` to the samples. min-ESS is over every latent entry. Cache modes: `none` (no "
        "persistent cache), `fill` (first run, `ppinv.enable_compilation_cache` on an empty directory), `warm` "
        "(second run on that directory). Programs: executables `mcmc.run` compiled or read from the cache; compile "
        "CPU s: process CPU seconds spent in them. Starts: see the script's docstring (free starts at the true "
        "latents for soft NUTS on Lotka–Volterra and for every method on network tomography).",
        "",
        f"Machine: {machine.get('cpu')} ({machine.get('usable_cores')} usable cores), {machine.get('device')}, "
        f"jax {machine.get('jax')}, numpyro {machine.get('numpyro')}, load at start {machine.get('loadavg_start')}; "
        f"ppinv {machine.get('ppinv_commit')}{' (modified)' if machine.get('ppinv_dirty') else ''}; "
        f"{cfg.get('runs', '?')} runs, load now {machine.get('loadavg_now')}.",
        "",
        "| model | method | cache | warm-up+draws | wall s | CPU s | programs | compile wall s | compile CPU s "
        "| cache hits | min-ESS | min-ESS/s | min-ESS per CPU s | divergences | max violation | load |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(f"| {s['model']} | {s['method']} | {s['mode']} | {s['warmup']}+{s['samples']} | "
                     f"{s['wall_s']:.2f} | {s['cpu_s']:.2f} | {s['programs']:.0f} | {s['compile_s']:.2f} | "
                     f"{s['compile_cpu_s']:.2f} | {s['cache_hits']:.0f} | {s['min_ess']:.0f} | {s['ess_per_s']:.1f} | "
                     f"{s['ess_per_cpu_s']:.1f} | {s['divergences']:.0f} | {s['violation']:.1e} | {s['loadavg']:.1f} |")
    if rat:
        lines += ["", "ppinv's min-ESS/s (incl. compilation) over the others', same model and cache mode (per wall "
                  "second and per CPU second of the process; on a loaded machine the CPU figure is the steadier one):",
                  "the CPU ratio is the product of the two factors beside it: their CPU seconds over ppinv's (the "
                  "cost of the run, compilation included) and ppinv's min-ESS over theirs (one seed per method, the "
                  "same in every repeat: a Monte-Carlo quantity, not averaged by the repeats).", "",
                  "| model | cache | versus | repeats | ratio (wall) | ratio (CPU) | = their CPU s / ppinv's "
                  "| × min-ESS ppinv / theirs |", "|---|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['mode']} | {r['versus']} | {r['repeats']} | {r['ratio']:.2f}× | "
                  f"{r['ratio_cpu']:.2f}× | {r['cpu_ratio']:.2f}× | {r['ess_ratio']:.2f}× |" for r in rat]
    lines += ["", "Soft NUTS samples a different (approximate) posterior: its violation of the constraint is the "
              "price of ε; ppinv's and the hand-written inverse's are round-off (Lotka–Volterra: relative).", ""]
    Path(path).write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=None, help="warm-up per chain (default: per model)")
    p.add_argument("--samples", type=int, default=None, help="draws per chain (default: per model)")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--merge", default="", help="comma-separated startup*.json of earlier runs: write their runs "
                                               "together (no new runs)")
    args = p.parse_args(argv)
    model_names = [m for m in args.models.split(",") if m]
    sizes = {m: QUICK_SIZES if args.quick else SIZES[m] for m in MODELS}
    sizes = {m: (args.warmup if args.warmup is not None else w, args.samples if args.samples is not None else n)
             for m, (w, n) in sizes.items()}
    if args.child:
        model_name, method = args.child
        print(json.dumps(_child(model_name, method, args.cache_dir or None, *sizes[model_name], args.chains)))
        return None
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    methods = [m for m in args.methods.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    unknown = (set(methods) - set(METHODS)) | (set(modes) - set(MODES)) | (set(model_names) - set(MODELS))
    if unknown:
        p.error(f"unknown models/methods/modes {sorted(unknown)}; models: {MODELS}, methods: {METHODS}, "
                f"modes: {MODES}")
    sys.path.insert(0, str(ROOT))
    from experiments.machine import machine_info

    machine = machine_info()
    cfg = dict(sizes={m: sizes[m] for m in model_names}, chains=args.chains, repeats=repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""

    def write(rows):  # after every run, so that a stopped experiment leaves what it measured
        from experiments.timing import write_csv

        summary = summarise(rows)
        rat = ratios(summary)
        machine["loadavg_now"] = os.getloadavg()
        write_csv(out / f"startup{suffix}.csv", rows, FIELDS)
        write_markdown(out / f"startup{suffix}.md", summary, rat, machine, dict(cfg, runs=len(rows)))
        (out / f"startup{suffix}.json").write_text(json.dumps(dict(machine=machine, config=cfg, runs=rows,
                                                                  summary=summary, ratios=rat), indent=1))
        return dict(runs=rows, summary=summary, ratios=rat)

    if args.merge:  # runs made in several invocations (e.g. one model at a time), reported together
        saved = [json.loads(Path(f).read_text()) for f in args.merge.split(",") if f]
        machine.update(loadavg_start=saved[0]["machine"].get("loadavg_start"),
                       ppinv_commit=",".join(dict.fromkeys(m["machine"]["ppinv_commit"] for m in saved)),
                       ppinv_dirty=any(m["machine"]["ppinv_dirty"] for m in saved))
        cfg.update(sizes={k: v for m in saved for k, v in m["config"]["sizes"].items()},
                   repeats=max(m["config"]["repeats"] for m in saved))
        return write([r for m in saved for r in m["runs"]])
    rows = run(model_names, methods, modes, repeats, sizes, args.chains, on_row=write)
    return write(rows)


if __name__ == "__main__":
    main()
