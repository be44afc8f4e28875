"""Timing shared by the experiment scripts: wall, CPU and JAX compile time; CSV and medians."""

from __future__ import annotations

import csv
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

PERF = time.perf_counter
CPU = time.process_time

# =====================================================================================
# timing: wall, CPU and JAX compile time
# =====================================================================================
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class _CompileClock:
    """Sums JAX's compile-stage durations (tracing, lowering, XLA compile) while active."""

    def __init__(self):
        self.total = 0.0
        self.count = 0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if self.active and event in _COMPILE_EVENTS:
            self.total += duration
            self.count += 1


_CLOCK = None


class timed:
    """``with timed() as t: ...`` → ``t.wall``, ``t.cpu``, ``t.compile`` (seconds), ``t.compiles`` (count)."""

    def __enter__(self):
        global _CLOCK  # one listener per process: jax.monitoring cannot unregister
        if _CLOCK is None:
            _CLOCK = _CompileClock()
        self._c0, self._n0 = _CLOCK.total, _CLOCK.count
        _CLOCK.active = True
        self._w0, self._p0 = PERF(), CPU()
        return self

    def __exit__(self, *exc):
        self.wall = PERF() - self._w0
        self.cpu = CPU() - self._p0
        _CLOCK.active = False
        self.compile = _CLOCK.total - self._c0
        self.compiles = _CLOCK.count - self._n0
        return False



def write_csv(path, rows, fields):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in fields})


def median(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else float("nan")


