"""Overhead of ppinv's overlay: run time against hand-written inverses, and build time.

Two measurements:

1. **Overlay vs hand-written.** For a few programs, ``jax.jit(jax.vmap(inv.with_log_det))``
   (x and log|det| from the inverse ppinv builds) against a hand-written jitted+vmapped
   function computing the same x and log|det| in the same θ-parametrization, over
   ``--n-inputs`` inputs on CPU. Two hand-written baselines are timed:

   * ``hand`` — the plain formulas (what one would write without thinking about domains);
   * ``hand+mask`` — the same, with the overlay's outside-the-domain semantics
     (x = NaN and log|det| = −inf where log|det| is not finite).

   The three functions are timed interleaved (rotating order) so that machine noise
   hits all of them alike; the medians and the ratio overlay / hand are reported.
   Outputs are checked to agree (``allclose``) before anything is timed, and the
   parametrization is checked by matching the PGF's θ against the hand-written θ.

2. **Build-time scaling.** Straight-line programs of 10 … 10,000 primitive equations
   (generated: a spine from ``x0`` to the observed output through add / mul-by-constant /
   mul and div by positive side values / neg / exp-log segments, plus side values that
   are functions of ``x1..x3`` through sin / exp / log / mul with fan-out), inverted with
   ``ppinv.inverse`` and compiled. Time is split into make_jaxpr+import, scheduling,
   lowering (tracing the inverse to StableHLO) and XLA compile, plus the first call.
   The forward program's compile time is reported for reference.

Usage::

    python experiments/overhead.py [--quick] [--out experiments/results]

Writes ``overhead[_quick].json``, ``overhead_overlay[_quick].csv``,
``overhead_build[_quick].csv`` and ``overhead_build[_quick].png`` under ``--out``
and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout (experiments/ is not installed)
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from experiments.benchmark_programs import PROGRAMS, make_program, make_scan_program  # noqa: E402
from experiments.timing import CPU, PERF, write_csv as _write_csv  # noqa: E402

import ppinv  # noqa: E402




def _masked(hand):
    """The hand-written inverse with the overlay's domain semantics (NaN / −inf outside)."""

    def f(y, t):
        xs, ld = hand(y, t)
        ok = jnp.isfinite(ld)
        return tuple(jnp.where(ok, x, jnp.nan) for x in xs), jnp.where(ok, ld, -jnp.inf)

    return f


def _match_roles(spec, theta, x):
    """Map each θ role of the hand-written inverse to the overlay's θ leaf with the same values."""
    mapping = {}
    for role, fn in spec["roles"].items():
        want = np.asarray(fn(x))
        hits = [k for k, v in theta.items() if k not in mapping.values()
                and np.shape(v) == want.shape and np.allclose(np.asarray(v), want, rtol=1e-6, atol=1e-9)]
        if len(hits) != 1:
            raise RuntimeError(
                f"{spec['name']}: the overlay's θ {sorted(theta)} does not contain the hand-written "
                f"parametrization (role {role!r} matched {hits}); the scheduler chose a different θ, so "
                "the hand-written inverse would compute something else. Update PROGRAMS."
            )
        mapping[role] = hits[0]
    extra = set(theta) - set(mapping.values())
    if extra:
        raise RuntimeError(f"{spec['name']}: overlay has θ leaves {sorted(extra)} the hand-written inverse lacks.")
    return mapping


_OPCODE = re.compile(r"=\s+(?:\([^)]*\)|\S+)\s+([a-z][a-z0-9\-]*)\(")
_INTEREST = ("fusion", "exponential", "log", "log-plus-one", "exponential-minus-one", "sine", "cosine",
             "divide", "multiply", "add", "subtract", "select", "compare", "is-finite", "and", "copy",
             "broadcast", "convert", "power", "sqrt", "atan2")


def _hlo_summary(compiled):
    text = compiled.as_text()
    ops = Counter()
    for line in text.splitlines():
        m = _OPCODE.search(line)
        if m:
            ops[m.group(1)] += 1
    ops.pop("parameter", None)
    ops.pop("constant", None)
    return {"instructions": sum(ops.values()), **{k: ops[k] for k in _INTEREST if ops.get(k)}}


def _time_interleaved(fns, args, repeats, min_sample_s, bar):
    """Median seconds per call of each function, timed in rotating order."""
    names = list(fns)
    # calibrate the number of calls per sample on the slowest function
    per_call = 0.0
    for f in fns.values():
        for _ in range(3):  # warm-up: first calls pay allocator / page-fault costs
            t0 = PERF()
            jax.block_until_ready(f(*args))
        per_call = max(per_call, PERF() - t0)
    inner = max(1, math.ceil(min_sample_s / max(per_call, 1e-9)))
    samples = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            f = fns[n]
            t0, c0 = PERF(), CPU()
            for _ in range(inner):
                jax.block_until_ready(f(*args))
            samples[n].append((PERF() - t0) / inner)
            cpu[n].append((CPU() - c0) / inner)
        bar.update(1)
    return samples, cpu, inner


def run_overlay(n_inputs, repeats, min_sample_s, dtype, bar, seed=0):
    rows = []
    rng = np.random.default_rng(seed)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    for spec in PROGRAMS:
        bar.set_postfix_str(spec["name"])
        f = spec["f"]
        inv = ppinv.inverse(f, *([dtype(1.0)] * spec["n_args"]))
        x = [jnp.asarray(v) for v in spec["sample"](rng, n_inputs, dtype)]
        y = jax.jit(jax.vmap(f))(*x)
        theta = jax.jit(jax.vmap(inv.pgf))(*x)
        mapping = _match_roles(spec, theta, x)
        theta_roles = {role: theta[name] for role, name in mapping.items()}

        overlay = jax.jit(jax.vmap(inv.with_log_det))
        hand = jax.jit(jax.vmap(spec["hand"]))
        hand_mask = jax.jit(jax.vmap(_masked(spec["hand"])))
        fns = {
            "overlay": lambda y, to, tr: overlay(y, to),
            "hand": lambda y, to, tr: hand(y, tr),
            "hand+mask": lambda y, to, tr: hand_mask(y, tr),
        }
        args = (y, theta, theta_roles)

        # the benchmark must compare the same computation
        xo, ldo = overlay(y, theta)
        for name in ("hand", "hand+mask"):
            xh, ldh = fns[name](*args)
            for i, (a, b) in enumerate(zip(xo, xh)):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol,
                                           err_msg=f"{spec['name']}: x[{i}] overlay vs {name}")
            np.testing.assert_allclose(np.asarray(ldo), np.asarray(ldh), **tol,
                                       err_msg=f"{spec['name']}: log|det| overlay vs {name}")
        rec_tol = dict(rtol=1e-7, atol=1e-7) if dtype == np.float64 else dict(rtol=5e-3, atol=5e-3)
        for i, (a, b) in enumerate(zip(xo, x)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), **rec_tol,
                                       err_msg=f"{spec['name']}: x[{i}] not recovered")
        in_domain = float(np.mean(np.isfinite(np.asarray(ldo))))

        hlo = {
            "overlay": _hlo_summary(overlay.lower(y, theta).compile()),
            "hand": _hlo_summary(hand.lower(y, theta_roles).compile()),
            "hand+mask": _hlo_summary(hand_mask.lower(y, theta_roles).compile()),
        }
        samples, cpu, inner = _time_interleaved(fns, args, repeats, min_sample_s, bar)
        med = {k: statistics.median(v) for k, v in samples.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        paired = [o / h for o, h in zip(samples["overlay"], samples["hand"])]
        paired_mask = [o / h for o, h in zip(samples["overlay"], samples["hand+mask"])]
        rows.append(dict(
            program=spec["name"],
            n_inputs=n_inputs,
            dtype=np.dtype(dtype).name,
            theta=list(theta),
            n_eqns=len(inv.program.eqns),
            schedule_steps=len(inv.schedule.steps),
            in_domain_fraction=in_domain,
            repeats=repeats,
            calls_per_sample=inner,
            overlay_ms=med["overlay"] * 1e3,
            hand_ms=med["hand"] * 1e3,
            hand_mask_ms=med["hand+mask"] * 1e3,
            ratio=med["overlay"] / med["hand"],
            ratio_paired_median=statistics.median(paired),
            ratio_vs_mask=med["overlay"] / med["hand+mask"],
            ratio_vs_mask_paired_median=statistics.median(paired_mask),
            overlay_cpu_ms=med_cpu["overlay"] * 1e3,
            hand_cpu_ms=med_cpu["hand"] * 1e3,
            hand_mask_cpu_ms=med_cpu["hand+mask"] * 1e3,
            ratio_cpu=med_cpu["overlay"] / med_cpu["hand"],
            ratio_cpu_vs_mask=med_cpu["overlay"] / med_cpu["hand+mask"],
            samples_ms={k: [s * 1e3 for s in v] for k, v in samples.items()},
            samples_cpu_ms={k: [s * 1e3 for s in v] for k, v in cpu.items()},
            hlo=hlo,
        ))
    return rows


class _StageTimer:
    """Times ppinv.inverse's import and scheduling stages by wrapping the module-level names."""

    NAMES = ("build_schedule", "import_jaxpr")

    def __init__(self):
        # ``ppinv.inverse`` is the function (re-exported); the module is in sys.modules
        self.mod = sys.modules["ppinv.inverse"]
        self.times = {}
        self._orig = {}

    def __enter__(self):
        for name in self.NAMES:
            orig = getattr(self.mod, name, None)
            if orig is None:
                continue
            self._orig[name] = orig

            def wrapped(*a, _orig=orig, _name=name, **k):
                t0 = PERF()
                try:
                    return _orig(*a, **k)
                finally:
                    self.times[_name] = self.times.get(_name, 0.0) + PERF() - t0

            setattr(self.mod, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, orig in self._orig.items():
            setattr(self.mod, name, orig)


def _build_once(n_eqns, n_inputs, seed, dtype, verify):
    f = make_program(n_eqns, n_inputs, seed)
    example = [dtype(1.0)] * n_inputs
    jax.clear_caches()
    t0, c0 = PERF(), CPU()
    jax.make_jaxpr(f)(*example)  # JAX's share of ppinv.inverse: tracing the program
    t_trace_program, c_trace_program = PERF() - t0, CPU() - c0
    jax.clear_caches()
    t0, c0 = PERF(), CPU()
    with _StageTimer() as st:
        inv = ppinv.inverse(f, *example)
    t_inverse, c_inverse = PERF() - t0, CPU() - c0
    t_sched = st.times.get("build_schedule", float("nan"))
    t_import = st.times.get("import_jaxpr", float("nan"))
    th0 = {k: jnp.zeros(s.shape, s.dtype) for k, s in inv.theta_spec.items()}
    y0 = jnp.asarray(1.0, dtype)
    fn = jax.jit(inv.with_log_det)
    t0, c0 = PERF(), CPU()
    traced = fn.trace(y0, th0)  # ppinv's executor runs here (and JAX traces the ops it emits)
    t_trace_inverse, c_trace_inverse = PERF() - t0, CPU() - c0
    lowered = traced.lower()
    t_lower, c_lower = PERF() - t0, CPU() - c0
    t0, c0 = PERF(), CPU()
    compiled = lowered.compile()
    t_compile, c_compile = PERF() - t0, CPU() - c0
    t0 = PERF()
    jax.block_until_ready(compiled(y0, th0))
    t_first = PERF() - t0
    t0, c0 = PERF(), CPU()
    jax.jit(f).lower(*example).compile()
    t_fwd, c_fwd = PERF() - t0, CPU() - c0
    row = dict(
        n_eqns_target=n_eqns,
        n_eqns_traced=len(jax.make_jaxpr(f)(*example).jaxpr.eqns),
        n_eqns=len(inv.program.eqns),
        n_steps=len(inv.schedule.steps),
        n_theta=inv.n_theta,
        theta_leaves=len(inv.theta_spec),
        trace_import_s=t_inverse - t_sched,
        trace_program_s=t_trace_program,
        trace_inverse_s=t_trace_inverse,
        # ppinv's own phases (no XLA, no MLIR lowering): ppinv.inverse less JAX's tracing of the program,
        # and the tracing of the inverse (ppinv's executor)
        ppinv_own_s=max(t_inverse - t_trace_program, 0.0) + t_trace_inverse,
        cpu_ppinv_own_s=max(c_inverse - c_trace_program, 0.0) + c_trace_inverse,
        import_s=t_import,
        schedule_s=t_sched,
        lower_s=t_lower,
        compile_s=t_compile,
        first_call_s=t_first,
        total_s=t_inverse + t_lower + t_compile + t_first,
        forward_compile_s=t_fwd,
        cpu_inverse_s=c_inverse,
        cpu_lower_s=c_lower,
        cpu_compile_s=c_compile,
        cpu_total_s=c_inverse + c_lower + c_compile,
        cpu_forward_compile_s=c_fwd,
        stablehlo_lines=lowered.as_text().count("\n"),
    )
    if verify:
        rng = np.random.default_rng(seed + 1)
        errs = []
        for _ in range(3):
            x = [dtype(v) for v in rng.normal(size=n_inputs)]
            xr, ld = compiled(jnp.asarray(f(*x), dtype), inv.pgf(*x))
            errs.append(max(abs(float(a) - float(b)) / max(1.0, abs(float(b))) for a, b in zip(xr, x)))
            if not np.isfinite(float(ld)):
                raise AssertionError(f"{n_eqns} eqns: log|det| is not finite at a PGF point")
        tol = 1e-6 if dtype == np.float64 else 1e-2
        if max(errs) > tol or inv.n_theta != n_inputs - 1:
            raise AssertionError(
                f"{n_eqns} eqns: round trip error {max(errs):.3g}, n_theta {inv.n_theta} (want {n_inputs - 1})"
            )
        row["roundtrip_rel_err"] = max(errs)
    return row


_COMPONENTS = ("trace_import_s", "trace_program_s", "trace_inverse_s", "ppinv_own_s", "cpu_ppinv_own_s", "cpu_ppinv_own_s", "schedule_s", "lower_s", "compile_s", "first_call_s", "total_s", "forward_compile_s",
               "cpu_inverse_s", "cpu_lower_s", "cpu_compile_s", "cpu_total_s", "cpu_forward_compile_s")


def run_build(sizes, repeats, dtype, bar, n_inputs=4):
    runs, summary = [], []
    for n in sizes:
        per = []
        for r in range(repeats):
            bar.set_postfix_str(f"build {n} eqns #{r + 1}")
            row = _build_once(n, n_inputs, seed=n, dtype=dtype, verify=(r == 0))
            row["repeat"] = r
            per.append(row)
            bar.update(1)
        runs.extend(per)
        med = {k: statistics.median(p[k] for p in per) for k in _COMPONENTS}
        lo = {k: min(p[k] for p in per) for k in _COMPONENTS}
        hi = {k: max(p[k] for p in per) for k in _COMPONENTS}
        summary.append(dict(n_eqns=per[0]["n_eqns"], n_theta=per[0]["n_theta"], n_steps=per[0]["n_steps"],
                            roundtrip_rel_err=per[0].get("roundtrip_rel_err"),
                            median=med, min=lo, max=hi))
    for prev, cur in zip(summary, summary[1:]):
        cur["growth_vs_previous"] = {
            k: (cur["median"][k] / prev["median"][k] if prev["median"][k] > 0 else float("nan")) for k in _COMPONENTS
        }
        cur["size_factor"] = cur["n_eqns"] / prev["n_eqns"]
    if len(summary) >= 2:
        x = np.log([s["n_eqns"] for s in summary])
        for k in _COMPONENTS:
            yv = np.log([max(s["median"][k], 1e-9) for s in summary])
            slope = float(np.polyfit(x, yv, 1)[0])
            for s in summary:
                s.setdefault("loglog_slope_all_sizes", {})[k] = slope
    return runs, summary


# =====================================================================================
# 3. scan length: the inverse of a loop is built and compiled once, whatever its length
# =====================================================================================
def _scan_once(length, dtype):
    f = make_scan_program(length)
    uz = jnp.log(jnp.array([0.4, 0.005, 0.05, 0.001], dtype)) + 2.0
    un = jnp.asarray(np.random.RandomState(0).normal(size=2 * length), dtype)
    t0 = time.perf_counter()
    inv = ppinv.inverse(f, uz, un)
    t1 = time.perf_counter()
    y = f(uz, un)
    theta = inv.pgf(uz, un)
    lowered = jax.jit(inv.with_log_det).lower(y, theta)
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    xr, ld = compiled(y, theta)
    jax.block_until_ready(xr)
    t4 = time.perf_counter()
    err = float(jnp.max(jnp.abs(xr[1] - un)))
    return dict(length=length, n_steps=len(inv.schedule.steps), build_s=t1 - t0, lower_s=t2 - t1,
                compile_s=t3 - t2, first_call_s=t4 - t3, total_s=t4 - t0, roundtrip_abs_err=err)


def run_scan(lengths, repeats, dtype, bar):
    rows = []
    for n in lengths:
        per = []
        for r in range(repeats):
            bar.set_postfix_str(f"scan {n} steps #{r + 1}")
            per.append(_scan_once(n, dtype))
            bar.update(1)
        med = {k: statistics.median(p[k] for p in per) for k in ("build_s", "lower_s", "compile_s", "first_call_s", "total_s")}
        rows.append(dict(length=n, n_steps=per[0]["n_steps"], roundtrip_abs_err=per[0]["roundtrip_abs_err"], **med))
    for row in rows:
        row["ratio_to_shortest"] = row["total_s"] / rows[0]["total_s"]
    return rows


def profile_schedule(n_eqns, dtype, out_path, n_inputs=4, top=30):
    """cProfile of ppinv.inverse (trace + import + schedule) at one size."""
    import cProfile
    import io
    import pstats

    f = make_program(n_eqns, n_inputs, seed=n_eqns)
    prof = cProfile.Profile()
    prof.enable()
    ppinv.inverse(f, *([dtype(1.0)] * n_inputs))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    Path(out_path).write_text(buf.getvalue())
    return buf.getvalue()


# =====================================================================================
# reporting
# =====================================================================================
from experiments.machine import machine_info  # noqa: E402



def _plot(summary, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([s["n_eqns"] for s in summary], float)
    fig, ax = plt.subplots(figsize=(7, 5))
    series = [("total_s", "total (first call)", "k", "o-"), ("trace_import_s", "make_jaxpr + import", "C0", "s--"),
              ("schedule_s", "schedule", "C1", "^--"), ("lower_s", "lower (trace inverse)", "C2", "v--"),
              ("compile_s", "XLA compile", "C3", "D--"), ("forward_compile_s", "forward program: XLA compile", "C7", "x:")]
    for key, label, color, style in series:
        med = np.array([s["median"][key] for s in summary])
        lo = np.array([s["min"][key] for s in summary])
        hi = np.array([s["max"][key] for s in summary])
        ax.errorbar(n, med, yerr=[med - lo, hi - med], fmt=style, color=color, label=label, capsize=3, ms=5)
    t0 = summary[0]["median"]["total_s"]
    ax.plot(n, t0 * n / n[0], color="0.6", lw=0.8, label="linear in size (from smallest total)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("primitive equations in the program")
    ax.set_ylabel("seconds (median, min–max bars)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _summary_text(machine, overlay_rows, build_summary, cfg):
    lines = []
    lines.append(f"machine: {machine['cpu']}, {machine['usable_cores']} usable cores "
                 f"({machine['logical_cores']} logical); jax {machine['jax']} / jaxlib {machine['jaxlib']} "
                 f"on {machine['jax_backend']}; python {machine['python']}; ppinv {machine['ppinv_commit']}"
                 f"{' (+uncommitted ppinv changes)' if machine['ppinv_dirty'] else ''}; "
                 f"glibc malloc tuned: {all(machine['malloc_env'].values())}")
    if overlay_rows:
        lines.append("")
        lines.append(f"1. overlay vs hand-written: jit(vmap(.)) over {cfg['n_inputs']:,} inputs, {cfg['dtype']}, "
                     f"median of {cfg['repeats']} interleaved samples (goal: overlay/hand <= 1.10)")
        lines.append("  wall: median wall-clock ms per call; paired: median over samples of overlay/hand taken "
                     "back to back; cpu: process CPU time (all threads)")
        hdr = (f"{'program':<23}{'overlay':>9}{'hand':>9}{'h+mask':>9}{'ovl/hand':>9}{'paired':>8}{'ovl/h+m':>9}"
               f"{'cpu ovl':>9}{'cpu hand':>9}{'cpu o/h':>8}{'cpu o/h+m':>10}{'HLO ops o/h':>13}")
        lines.append(hdr)
        for r in overlay_rows:
            h = r["hlo"]
            lines.append(f"{r['program']:<23}{r['overlay_ms']:>9.2f}{r['hand_ms']:>9.2f}{r['hand_mask_ms']:>9.2f}"
                         f"{r['ratio']:>9.2f}{r['ratio_paired_median']:>8.2f}{r['ratio_vs_mask']:>9.2f}"
                         f"{r['overlay_cpu_ms']:>9.2f}{r['hand_cpu_ms']:>9.2f}{r['ratio_cpu']:>8.2f}"
                         f"{r['ratio_cpu_vs_mask']:>10.2f}{h['overlay']['instructions']:>8}/{h['hand']['instructions']:<5}")
    if build_summary:
        lines.append("")
        lines.append(f"2. build time (median of {cfg['build_repeats']}; seconds; goals: x10 eqns -> <= x12 time, "
                     "<= 5 s at 1,000)")
        lines.append("  wall-clock stages; 'cpu total' is process CPU time of the same stages; x prev: growth of the "
                     "total over the previous size")
        lines.append("  ppinv own: ppinv.inverse less JAX's tracing of the program, plus tracing the inverse "
                     "(ppinv's executor; 'lower' includes it); no MLIR lowering, no XLA (goal: <= 1 s at 1,000, "
                     "linear to 10^4)")
        hdr = (f"{'eqns':>7}{'steps':>7}{'jaxpr+imp':>11}{'schedule':>10}{'lower':>9}{'compile':>9}"
               f"{'1st call':>10}{'total':>9}{'x prev':>8}{'cpu total':>10}{'x prev':>8}{'fwd comp':>10}"
               f"{'tr. inv':>9}{'ppinv own':>11}{'x prev':>8}{'cpu own':>9}{'x prev':>8}")
        lines.append(hdr)
        for s in build_summary:
            m = s["median"]
            g = s.get("growth_vs_previous", {}).get("total_s")
            gc = s.get("growth_vs_previous", {}).get("cpu_total_s")
            lines.append(f"{s['n_eqns']:>7}{s['n_steps']:>7}{m['trace_import_s']:>11.3f}{m['schedule_s']:>10.3f}"
                         f"{m['lower_s']:>9.3f}{m['compile_s']:>9.3f}{m['first_call_s']:>10.4f}{m['total_s']:>9.3f}"
                         f"{(f'{g:.1f}' if g else '-'):>8}{m['cpu_total_s']:>10.3f}{(f'{gc:.1f}' if gc else '-'):>8}"
                         f"{m['forward_compile_s']:>10.3f}{m['trace_inverse_s']:>9.3f}{m['ppinv_own_s']:>11.3f}"
                         f"{(f'{go:.1f}' if (go := s.get('growth_vs_previous', {}).get('ppinv_own_s')) else '-'):>8}"
                         f"{m['cpu_ppinv_own_s']:>9.3f}"
                         f"{(f'{gq:.1f}' if (gq := s.get('growth_vs_previous', {}).get('cpu_ppinv_own_s')) else '-'):>8}")
        if len(build_summary) >= 2:
            sl = build_summary[0]["loglog_slope_all_sizes"]
            lines.append("log-log slope over all sizes: " + ", ".join(
                f"{k[:-2]} {sl[k]:.2f}" for k in ("trace_import_s", "schedule_s", "lower_s", "compile_s", "total_s",
                                                  "cpu_total_s", "forward_compile_s", "trace_inverse_s",
                                                  "ppinv_own_s", "cpu_ppinv_own_s")))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (10^3 inputs, programs of 10 and 100 eqns)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output folder")
    p.add_argument("--n-inputs", type=int, default=None, help="inputs per vmapped call (default 10^6)")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per function (default 15)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="program sizes (default 10 100 1000 10000)")
    p.add_argument("--build-repeats", type=int, default=3)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--skip-overlay", action="store_true")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--scan-lengths", type=int, nargs="+", default=None,
                   help="scan lengths for the loop benchmark (default 10 100 1000 10000)")
    p.add_argument("--skip-scan", action="store_true")
    p.add_argument("--profile", type=int, default=None, metavar="N",
                   help="also cProfile ppinv.inverse on a program of N eqns (writes overhead_profile.txt)")
    args = p.parse_args(argv)

    jax.config.update("jax_enable_x64", True)  # θ branch indices are int64; floats follow --dtype
    dtype = np.float64 if args.dtype == "float64" else np.float32
    quick = args.quick
    n_inputs = args.n_inputs or (10**3 if quick else 10**6)
    repeats = args.repeats or (3 if quick else 15)
    sizes = args.sizes or ([10, 100] if quick else [10, 100, 1000, 10000])
    build_repeats = 1 if quick and args.build_repeats == 3 else args.build_repeats
    min_sample_s = 0.002 if quick else 0.1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if quick else ""

    machine = machine_info()
    cfg = dict(quick=quick, n_inputs=n_inputs, repeats=repeats, sizes=sizes, build_repeats=build_repeats,
               dtype=args.dtype, min_sample_s=min_sample_s)
    scan_lengths = args.scan_lengths or ([10, 100] if quick else [10, 100, 1000, 10000])
    total = (0 if args.skip_overlay else len(PROGRAMS) * repeats) + (0 if args.skip_build else len(sizes) * build_repeats)
    total += 0 if args.skip_scan else len(scan_lengths) * build_repeats
    overlay_rows, build_runs, build_summary, scan_rows = [], [], [], []
    with tqdm(total=total, desc="overhead", unit="step", dynamic_ncols=True) as bar:
        if not args.skip_overlay:
            overlay_rows = run_overlay(n_inputs, repeats, min_sample_s, dtype, bar)
        if not args.skip_build:
            build_runs, build_summary = run_build(sizes, build_repeats, dtype, bar)
        if not args.skip_scan:
            scan_rows = run_scan(scan_lengths, build_repeats, dtype, bar)
    profile = None
    if args.profile:
        profile = profile_schedule(args.profile, dtype, out / f"overhead_profile{suffix}.txt")

    result = dict(machine=machine, config=cfg, overlay=overlay_rows, build_runs=build_runs,
                  build_summary=build_summary, scan=scan_rows, profile_top=profile)
    if scan_rows:
        _write_csv(out / f"overhead_scan{suffix}.csv", scan_rows,
                   ["length", "n_steps", "build_s", "lower_s", "compile_s", "first_call_s", "total_s",
                    "ratio_to_shortest", "roundtrip_abs_err"])
    (out / f"overhead{suffix}.json").write_text(json.dumps(result, indent=1, default=float))
    if overlay_rows:
        _write_csv(out / f"overhead_overlay{suffix}.csv", overlay_rows,
                   ["program", "n_inputs", "dtype", "n_eqns", "repeats", "calls_per_sample", "overlay_ms", "hand_ms",
                    "hand_mask_ms", "ratio", "ratio_paired_median", "ratio_vs_mask", "ratio_vs_mask_paired_median",
                    "overlay_cpu_ms", "hand_cpu_ms", "hand_mask_cpu_ms", "ratio_cpu", "ratio_cpu_vs_mask",
                    "in_domain_fraction"])
    if build_runs:
        _write_csv(out / f"overhead_build{suffix}.csv", build_runs,
                   ["n_eqns_target", "n_eqns_traced", "n_eqns", "repeat", "n_steps", "n_theta", "theta_leaves", "trace_import_s",
                    "trace_program_s", "trace_inverse_s", "ppinv_own_s", "cpu_ppinv_own_s",
                    "import_s", "schedule_s", "lower_s", "compile_s", "first_call_s", "total_s", "forward_compile_s",
                    "cpu_inverse_s", "cpu_lower_s", "cpu_compile_s", "cpu_total_s", "cpu_forward_compile_s",
                    "stablehlo_lines", "roundtrip_rel_err"])
        _plot(build_summary, out / f"overhead_build{suffix}.png",
              f"ppinv build time vs program size ({machine['cpu']}, {machine['usable_cores']} cores, "
              f"jax {machine['jax']}, {args.dtype})")
    text = _summary_text(machine, overlay_rows, build_summary, cfg)
    if scan_rows:
        text += "\n\n3. scan length: build + lower + compile + first call of the inverse (median; goal <= 1.5x from 10 to 10,000)\n"
        text += f"{'length':>8}{'steps':>7}{'build':>9}{'lower':>9}{'compile':>9}{'total':>9}{'x shortest':>12}\n"
        text += "\n".join(f"{r['length']:>8}{r['n_steps']:>7}{r['build_s']:>9.3f}{r['lower_s']:>9.3f}"
                           f"{r['compile_s']:>9.3f}{r['total_s']:>9.3f}{r['ratio_to_shortest']:>12.2f}" for r in scan_rows)
    (out / f"overhead_summary{suffix}.txt").write_text(text + "\n")
    print(text)
    return result


_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


if __name__ == "__main__":
    # Each call returns fresh multi-MB arrays; with glibc's defaults every one is a new
    # mmap whose page faults (~20 ms per call here, and very noisy) swamp the arithmetic
    # being compared. Keep freed memory in the heap instead: re-exec with the tunables set
    # (they are read at process start). --no-malloc-tuning measures the default behaviour.
    if "--no-malloc-tuning" in sys.argv:
        sys.argv.remove("--no-malloc-tuning")
    elif any(os.environ.get(k) != v for k, v in _MALLOC_ENV.items()):
        os.environ.update(_MALLOC_ENV)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    main()
