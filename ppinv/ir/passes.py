"""Passes over an imported program: common subexpressions and constant folding."""

from __future__ import annotations

import jax
import numpy as np
from jax import lax

from .program import Eqn, Program, _const


def _freeze(x):
    """A hashable stand-in for an equation parameter."""
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    try:
        hash(x)
        return x
    except TypeError:
        return ("id", id(x))


def _const_key(v):
    if isinstance(v.value, jax.core.Tracer):  # closed over from an enclosing jit: one of its own
        return ("const", id(v))
    arr = np.asarray(v.value)
    if arr.size > 64:
        return ("const", id(v))
    return ("const", arr.dtype.str, arr.shape, arr.tobytes())


_IMPURE = ("random", "rng", "callback", "print", "debug")


def eliminate_common_subexpressions(prog: Program) -> Program:
    """Merge equations that compute the same thing from the same inputs.

    ``x[0]`` written twice traces to two ``slice`` equations; merged, the
    scheduler sees one value used twice (fan-out it can reason about) instead
    of two unrelated unknowns.
    """
    canon = {}
    seen = {}
    eqns = []

    def c(v):
        return canon.get(v, v)

    for e in prog.eqns:
        ins = tuple(c(v) for v in e.ins)
        if any(tag in e.prim.name for tag in _IMPURE):
            kept = Eqn(e.prim, e.params, ins, e.outs, e.source) if ins != e.ins else e
            kept.id = e.id
            eqns.append(kept)
            continue
        key = (e.prim, _freeze(e.params), tuple(_const_key(v) if v.is_const else v.id for v in ins))
        hit = seen.get(key)
        if hit is not None and all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(hit.outs, e.outs)):
            for o, h in zip(e.outs, hit.outs):
                canon[o] = h
            continue
        new = Eqn(e.prim, e.params, ins, e.outs, e.source) if ins != e.ins else e
        new.id = e.id  # ids order equations; keep the original position
        seen[key] = new
        eqns.append(new)
    return Program(prog.invars, [c(v) for v in prog.outvars], eqns)


def fold_constants(prog: Program, max_size: int = 1 << 20) -> Program:
    """Evaluate, once, every relation whose inputs are all constants.

    ``jnp.ones(3)`` traces to a ``broadcast_in_dim`` of a literal: folded, it
    is a constant, so linear maps built from it are decomposed (and checked for
    rank) when the inverse is built, not at every call.
    """
    canon = {}
    eqns = []
    for e in prog.eqns:
        ins = tuple(canon.get(v, v) for v in e.ins)
        picked = _constant_pick(e, ins)
        if picked is not None:  # the relation is the identity on one case; the others are unused
            canon[e.outs[0]] = picked
            continue
        foldable = (
            all(v.is_const for v in ins)  # nullary ones too: ``iota`` (``jnp.eye``, ``arange``)
            and not any(tag in e.prim.name for tag in _IMPURE)
            and all(o.size <= max_size and isinstance(o.dtype, np.dtype) for o in e.outs)
            and e.prim.name not in ("scan", "cond", "while")
        )
        if foldable:
            try:
                with jax.ensure_compile_time_eval():
                    vals = e.bind(*[v.value for v in ins])
                for o, val in zip(e.outs, vals):
                    canon[o] = _const(np.asarray(val))
                continue
            except Exception:  # leave anything that cannot run eagerly to run-time
                pass
        new = Eqn(e.prim, e.params, ins, e.outs, e.source) if ins != e.ins else e
        new.id = e.id
        eqns.append(new)
    return Program(prog.invars, [canon.get(v, v) for v in prog.outvars], eqns)


def _constant_pick(e, ins):
    """The case a ``select_n`` (``jnp.where``) with a constant predicate picks everywhere, else ``None``."""
    if e.prim is not lax.select_n_p or not ins[0].is_const or isinstance(ins[0].value, jax.core.Tracer):
        return None
    k = np.asarray(ins[0].value)
    if k.size == 0 or not np.all(k == k.flat[0]):
        return None
    case, out = ins[1 + int(k.flat[0])], e.outs[0]
    return case if case.shape == out.shape and case.dtype == out.dtype else None
