"""Cost of one potential + gradient evaluation: ppinv against a hand-written inverse.

NUTS spends its time in ``value_and_grad`` of the potential. This times it, vmapped over
4 chains and jitted, on Lotka–Volterra for (1) the hand-written inverse model of
``experiments/compare.py``, (2) ``models/lotka_volterra.conditioned()`` as ppinv builds it
(the scan inverse runs all 50 steps at once, since every carry is observed) and (3) the
same with that detection switched off (the steps run in sequence, as before it existed);
and on the bilinear benchmark (``x ∈ R³ ~ N(0, I)``, ``x0 + x1·x2 = 1``) for ppinv and its
hand-written inverse. Every program is compiled first; then the methods are timed in
turn, ``--calls`` calls each, ``--repeats`` rounds, so that a load that drifts (a shared
machine) falls on all of them alike. Medians per round, then the median of the rounds; and
the fastest tenth (10th percentile, the best round's), which other processes disturb less.

It also counts the operations of each optimised program (one chain, ``jax.jit(...)
.lower(...).compile().as_text()``, every instruction of every computation but the
parameters): what the potential carries besides the inverse itself.

Usage::

    python experiments/lv_gradient_cost.py [--out experiments/results] [--repeats 3] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from numpyro.infer.util import initialize_model  # noqa: E402

from experiments.machine import machine_info  # noqa: E402


def _compiled(model):
    """``(jitted vmapped value_and_grad of the potential, its 4-chain argument, HLO op count)``."""
    info = initialize_model(jax.random.PRNGKey(0), model, dynamic_args=False)
    one = jax.value_and_grad(info.potential_fn)
    f = jax.jit(jax.vmap(one))
    params = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (4,) + v.shape) + 0.0, info.param_info.z)
    jax.block_until_ready(f(params))
    return f, params, hlo_ops(jax.jit(one).lower(info.param_info.z).compile().as_text())


def hlo_ops(text):
    """Instructions in an optimised HLO module (all computations, fused ones included; no parameters)."""
    return sum(1 for line in text.splitlines()
               if re.match(r"^\s*(ROOT )?%\S+ = ", line) and " parameter(" not in line)


def _call_us(f, params, calls):
    """Wall time of each of ``calls`` calls, µs."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(f(params))
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def _fastest_tenth(times):
    """The 10th percentile: on a machine other processes load, closer to the program's own cost."""
    return statistics.quantiles(times, n=10)[0]


def microseconds_per_call(model, calls=300):
    f, params, _ = _compiled(model)
    return statistics.median(_call_us(f, params, calls))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(ROOT / "experiments"))
    import compare
    from models import bilinear, lotka_volterra
    from ppinv.rules import control

    programs = {
        "hand-written": _compiled(compare.hand_lotka_volterra()),
        "ppinv": _compiled(lotka_volterra.conditioned()),
    }
    detect = control._ScanSolver._carry_out_ignores_carry_in
    control._ScanSolver._carry_out_ignores_carry_in = lambda *a: False
    try:
        programs["ppinv, steps in sequence"] = _compiled(lotka_volterra.conditioned())
    finally:
        control._ScanSolver._carry_out_ignores_carry_in = detect
    programs["bilinear hand-written"] = _compiled(compare.hand_bilinear())
    programs["bilinear ppinv"] = _compiled(bilinear.conditioned())

    runs = {k: [] for k in programs}
    fast = {k: [] for k in programs}
    for _ in range(args.repeats):  # methods in turn, so that a drifting load falls on all
        for k, (f, params, _) in programs.items():
            times = _call_us(f, params, args.calls)
            runs[k].append(statistics.median(times))
            fast[k].append(_fastest_tenth(times))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    p10 = {k: min(v) for k, v in fast.items()}
    ops = {k: n for k, (_, _, n) in programs.items()}
    lv_keys = ("hand-written", "ppinv", "ppinv, steps in sequence")
    summary = {k: medians[k] for k in lv_keys}
    ratios = {"lotka_volterra": medians["ppinv"] / medians["hand-written"],
              "bilinear": medians["bilinear ppinv"] / medians["bilinear hand-written"]}
    ratios_p10 = {"lotka_volterra": p10["ppinv"] / p10["hand-written"],
                  "bilinear": p10["bilinear ppinv"] / p10["bilinear hand-written"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(machine=machine_info(), calls=args.calls, runs=runs, median_us=medians, ppinv_over_hand=ratios,
                  fastest_tenth_us=p10, ppinv_over_hand_fastest_tenth=ratios_p10, hlo_ops=ops,
                  loadavg_end=list(os.getloadavg()))
    (out / "lv_gradient_cost.json").write_text(json.dumps(record, indent=1))
    for group, hand in (("", "hand-written"), ("bilinear ", "bilinear hand-written")):
        for k in [k for k in programs if k.startswith(group) and (group or not k.startswith("bilinear"))]:
            v = medians[k]
            print(f"{k:<26}{v:8.1f} µs per value_and_grad (4 chains)   {v / medians[hand]:5.2f}x hand-written"
                  f"   (fastest tenth {p10[k]:7.1f} µs, {p10[k] / p10[hand]:5.2f}x)   {ops[k]:5d} HLO ops")
    return summary


if __name__ == "__main__":
    main()
