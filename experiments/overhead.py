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

The measurements are ``overhead_overlay.py`` (1) and ``overhead_build.py`` (2, and a scan's
length), the plot and summary ``overhead_report.py``; this script runs them and writes the files.

Usage::

    python experiments/overhead.py [--quick] [--out experiments/results]

Writes ``overhead[_quick].json``, ``overhead_overlay[_quick].csv``,
``overhead_build[_quick].csv`` and ``overhead_build[_quick].png`` under ``--out``
and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout (experiments/ is not installed)
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from experiments.benchmark_programs import PROGRAMS  # noqa: E402
from experiments.machine import machine_info  # noqa: E402
from experiments.overhead_build import profile_schedule, run_build, run_scan  # noqa: E402
from experiments.overhead_overlay import run_overlay  # noqa: E402
from experiments.overhead_report import _plot, _summary_text  # noqa: E402
from experiments.timing import write_csv as _write_csv  # noqa: E402


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
