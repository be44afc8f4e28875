"""Cost of one potential + gradient evaluation on Lotka–Volterra: ppinv against a hand-written inverse.

NUTS spends its time in ``value_and_grad`` of the potential. This times it, vmapped over
4 chains and jitted, for (1) the hand-written inverse model of ``experiments/compare.py``,
(2) ``models/lotka_volterra.conditioned()`` as ppinv builds it (the scan inverse runs all
50 steps at once, since every carry is observed) and (3) the same with that detection
switched off (the steps run in sequence, as before it existed). Medians of 300 calls,
repeated 3 times interleaved.

Usage::

    python experiments/lv_gradient_cost.py [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
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


def microseconds_per_call(model, calls=300):
    info = initialize_model(jax.random.PRNGKey(0), model, dynamic_args=False)
    f = jax.jit(jax.vmap(jax.value_and_grad(info.potential_fn)))
    params = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (4,) + v.shape) + 0.0, info.param_info.z)
    jax.block_until_ready(f(params))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(f(params))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(ROOT / "experiments"))
    import compare
    from models import lotka_volterra
    from ppinv.rules import control

    runs = {"hand-written": [], "ppinv": [], "ppinv, steps in sequence": []}
    for _ in range(args.repeats):
        runs["hand-written"].append(microseconds_per_call(compare.hand_lotka_volterra()))
        runs["ppinv"].append(microseconds_per_call(lotka_volterra.conditioned()))
        detect = control._ScanSolver._carry_out_ignores_carry_in
        control._ScanSolver._carry_out_ignores_carry_in = lambda *a: False
        try:
            runs["ppinv, steps in sequence"].append(microseconds_per_call(lotka_volterra.conditioned()))
        finally:
            control._ScanSolver._carry_out_ignores_carry_in = detect
    summary = {k: statistics.median(v) for k, v in runs.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lv_gradient_cost.json").write_text(json.dumps(dict(machine=machine_info(), runs=runs, median_us=summary),
                                                          indent=1))
    hand = summary["hand-written"]
    for k, v in summary.items():
        print(f"{k:<26}{v:8.1f} µs per value_and_grad (4 chains)   {v / hand:5.2f}x hand-written")
    return summary


if __name__ == "__main__":
    main()
