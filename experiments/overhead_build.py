"""Measurements 2 and 3 of ``overhead.py``: ppinv.inverse's build time against program size, split
into tracing, import, scheduling, lowering, XLA compile and the first call (:func:`run_build`); the
same for a scan against its length (:func:`run_scan`); a cProfile of one build (:func:`profile_schedule`)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ppinv
from experiments.benchmark_programs import make_program, make_scan_program
from experiments.timing import CPU, PERF


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
