"""Measurement 1 of ``overhead.py``: the overlay's inverse against hand-written ones (``hand``, and
``hand+mask`` with the overlay's outside-the-domain semantics), timed interleaved over many inputs
after checking that outputs and θ-parametrization agree (:func:`run_overlay`)."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np

import ppinv
from experiments.benchmark_programs import PROGRAMS
from experiments.timing import CPU, PERF


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
