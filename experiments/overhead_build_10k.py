"""ppinv's own build phases at 10³ and 10⁴ equations, without XLA: process CPU seconds, fresh processes.

``overhead_build.py`` times a build end to end, XLA's compile included; at 10⁴ equations XLA's
compile of the inverse takes many minutes on a shared machine, so this script stops before
lowering. Each repeat runs in a fresh Python process and records (process CPU seconds):

* ``import`` — ``import ppinv`` (with jax and numpyro);
* ``trace_program`` — ``jax.make_jaxpr`` of the program (JAX's share of ``ppinv.inverse``);
* ``import_jaxpr`` and ``schedule`` — ppinv's import of the jaxpr and its scheduler;
* ``inverse`` — all of ``ppinv.inverse`` (tracing, import, schedule, the rest of the build);
* ``trace_inverse`` — ``jax.make_jaxpr`` of the inverse with its log|det| (ppinv's executor runs here);
* ``own`` — ppinv's own phases: ``inverse − trace_program + trace_inverse``;
* ``gc`` — the part of ``inverse`` and ``trace_inverse`` spent in Python's cyclic garbage collector
  (its full collections scan the whole heap, JAX's and NumPyro's modules included, once new
  long-lived objects reach a quarter of it: a step in cost between sizes, linear on average),
  and ``own_without_gc`` = ``own − gc``.

The sizes are interleaved (one repeat of every size, then the next), so that the load of a shared
machine falls alike on every size.

Usage::

    python -m experiments.overhead_build_10k --sizes 1000 10000 --repeats 3
    python -m experiments.overhead_build_10k --profile 10000     # cProfile of one build, to stdout
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("import", "trace_program", "import_jaxpr", "schedule", "inverse", "trace_inverse", "own", "gc",
          "own_without_gc")


class _GcTimer:
    """Process CPU seconds spent in Python's cyclic garbage collector while active (``gc.callbacks``)."""

    def __init__(self):
        self.seconds, self._start = 0.0, None

    def _callback(self, phase, info):
        if phase == "start":
            self._start = time.process_time()
        elif self._start is not None:
            self.seconds += time.process_time() - self._start

    def __enter__(self):
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._callback)


class _CpuStages:
    """Process CPU seconds spent in ``ppinv.inverse``'s import and scheduling (module-level names wrapped)."""

    NAMES = ("build_schedule", "import_jaxpr")

    def __init__(self):
        self.mod = sys.modules["ppinv.inverse"]
        self.times = dict.fromkeys(self.NAMES, 0.0)
        self._orig = {}

    def __enter__(self):
        for name in self.NAMES:
            orig = self._orig[name] = getattr(self.mod, name)

            def wrapped(*a, _orig=orig, _name=name, **k):
                c0 = time.process_time()
                try:
                    return _orig(*a, **k)
                finally:
                    self.times[_name] += time.process_time() - c0

            setattr(self.mod, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, orig in self._orig.items():
            setattr(self.mod, name, orig)


def measure_once(n_eqns: int, n_inputs: int = 4) -> dict:
    """One build in this process (call it first thing in a fresh process: ``import`` is timed)."""
    c0 = time.process_time()
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ppinv
    from experiments.benchmark_programs import make_program

    jax.config.update("jax_enable_x64", True)
    row = {"import": time.process_time() - c0}
    f = make_program(n_eqns, n_inputs, n_eqns)
    example = [np.float64(1.0)] * n_inputs
    c0 = time.process_time()
    traced = jax.make_jaxpr(f)(*example)
    row["trace_program"] = time.process_time() - c0
    jax.clear_caches()
    c0 = time.process_time()
    with _CpuStages() as st, _GcTimer() as gc_build:
        inv = ppinv.inverse(f, *example)
    row["inverse"] = time.process_time() - c0
    row["import_jaxpr"], row["schedule"] = st.times["import_jaxpr"], st.times["build_schedule"]
    theta = {k: jnp.zeros(s.shape, s.dtype) for k, s in inv.theta_spec.items()}
    c0 = time.process_time()
    with _GcTimer() as gc_trace:
        jax.make_jaxpr(inv.with_log_det)(jnp.asarray(1.0), theta)
    row["trace_inverse"] = time.process_time() - c0
    row["own"] = max(row["inverse"] - row["trace_program"], 0.0) + row["trace_inverse"]
    row["gc"] = gc_build.seconds + gc_trace.seconds
    row["own_without_gc"] = row["own"] - row["gc"]
    row.update(n_eqns_target=n_eqns, n_eqns=len(traced.jaxpr.eqns), n_steps=len(inv.schedule.steps),
               n_theta=inv.n_theta)
    return row


def _fresh(n_eqns: int) -> dict:
    code = f"import json, experiments.overhead_build_10k as m; print(json.dumps(m.measure_once({n_eqns})))"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes, repeats):
    by_size = {n: [] for n in sizes}
    for r in range(repeats):  # interleaved: every size sees the machine's load of this round
        for n in sizes:
            row = _fresh(n)
            row["repeat"] = r
            row["loadavg"] = os.getloadavg()[0]
            by_size[n].append(row)
            print(json.dumps(row), flush=True)
    runs, summary = [row for per in by_size.values() for row in per], []
    for n, per in by_size.items():
        summary.append(dict(n_eqns=per[0]["n_eqns"], n_steps=per[0]["n_steps"],
                            median={k: statistics.median(p[k] for p in per) for k in PHASES},
                            loadavg=[p["loadavg"] for p in per]))
    for prev, cur in zip(summary, summary[1:]):
        cur["growth"] = {k: cur["median"][k] / prev["median"][k] for k in PHASES if prev["median"][k] > 0}
        cur["size_factor"] = cur["n_eqns"] / prev["n_eqns"]
    return runs, summary


def profile(n_eqns: int, top: int = 40) -> str:
    """cProfile (cumulative) of ppinv.inverse plus tracing the inverse, at one size."""
    import cProfile
    import io
    import pstats

    import jax
    import jax.numpy as jnp
    import numpy as np

    import ppinv
    from experiments.benchmark_programs import make_program

    jax.config.update("jax_enable_x64", True)
    f = make_program(n_eqns, 4, n_eqns)
    prof = cProfile.Profile()
    prof.enable()
    inv = ppinv.inverse(f, *([np.float64(1.0)] * 4))
    theta = {k: jnp.zeros(s.shape, s.dtype) for k, s in inv.theta_spec.items()}
    jax.make_jaxpr(inv.with_log_det)(jnp.asarray(1.0), theta)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", type=int, default=None, help="print a cProfile of one build at this size")
    p.add_argument("--json", type=Path, default=None, help="write runs and summary here")
    a = p.parse_args(argv)
    if a.profile:
        print(profile(a.profile))
        return None
    from experiments.machine import machine_info

    machine = machine_info()
    runs, summary = run(a.sizes, a.repeats)
    for s in summary:
        med = s["median"]
        print(f"{s['n_eqns']:>6} eqns  " + "  ".join(f"{k} {med[k]:.3f}" for k in PHASES)
              + (f"  growth(own) x{s['growth']['own']:.1f} for x{s['size_factor']:.0f} eqns" if "growth" in s else ""))
    result = dict(machine=machine, loadavg_end=os.getloadavg(), runs=runs, summary=summary)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
