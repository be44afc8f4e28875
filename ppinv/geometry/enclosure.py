"""Interval enclosures of a whole jaxpr's values, for many boxes of its inputs at once.

Where ``ppinv.intervals`` bounds a cone's Jacobian, this module bounds the *values* of
any traced function — an inverse with its guards, selects and domain flags — so that a
boolean output can be decided over a box: certainly true, certainly false, or unknown.

Every array carries, per element, ``lo ≤ value ≤ hi`` in the extended reals (an
infinite bound means the value may be infinite) and a flag ``nan``: the value may be
NaN. Booleans and integers are intervals too (``[0, 1]`` is an unknown boolean). All
arrays have a leading batch axis: one row per box, so a branch-and-bound step encloses
every cell of a level in one pass over the equations.

Primitives that only move, select or add their data (broadcasts, slices, gathers,
concatenation, sums, cumulative sums, scatter-adds, max/min) are increasing in it and
are bound by running the primitive itself on the lower and the upper bounds; the
elementwise rest have rules in :mod:`~ppinv.geometry.interval_ops`. A primitive with no rule raises :class:`NoEnclosure` naming it: the
caller then knows nothing (it must not guess). Bounds are not outward-rounded; callers
keep a relative margin.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import lax

from .._compat import CALL_PRIMITIVES, Literal, jaxpr_parts
from .interval_ops import (
    BINARY, UNARY, Box, NoEnclosure, _bool, _convert, _infinite, _integer_pow, _not, _pow, _reduce_logic, _rem,
    _select_n, point,
)

__all__ = ["Box", "NoEnclosure", "enclose", "point"]


#: each output element is a copy of one element of the data operands (the first ``n``; ``None``: all)
_SELECTIONS = {
    "broadcast_in_dim": 1, "reshape": 1, "squeeze": 1, "expand_dims": 1, "transpose": 1, "slice": 1,
    "rev": 1, "concatenate": None, "gather": 1, "dynamic_slice": 1, "stack": None, "split": 1, "unstack": 1,
}
#: increasing in their data operands, bound by running the primitive on the bounds
_INCREASING = {"scatter-add": (0, 2), "scatter_add": (0, 2), "dynamic_update_slice": (0, 1), "pad": (0, 1)}


def _fixed_operands(e, ins, data):
    for i in range(len(ins)):
        if i not in data and not ins[i].is_point:
            raise NoEnclosure(f"{e.primitive.name} with indices that are not known")
    return {i: np.asarray(ins[i].lo[0]).astype(e.invars[i].aval.dtype) for i in range(len(ins)) if i not in data}


def _sources(e, ins, data, cache):
    """Which element of the (flattened, concatenated) data operands each output element copies:
    the primitive run once on element numbers."""
    fixed = _fixed_operands(e, ins, data)
    # a body called from several places meets other indices: they are part of the key
    key = (id(e),) + tuple((i, fixed[i].tobytes()) for i in sorted(fixed))
    if key not in cache:
        offset, args = 0, []
        for i, v in enumerate(e.invars):
            if i in fixed:
                args.append(fixed[i])
            else:
                shape = tuple(v.aval.shape)
                args.append((offset + np.arange(int(np.prod(shape, dtype=int)), dtype=float)).reshape(shape))
                offset += int(np.prod(shape, dtype=int))
        out = e.primitive.bind(*args, **e.params)
        ids = [np.asarray(o, float) for o in (out if e.primitive.multiple_results else [out])]
        if any(np.isnan(i).any() for i in ids):  # an out-of-bounds fill: not a copy
            raise NoEnclosure(f"{e.primitive.name} fills some elements")
        cache[key] = (e, [i.astype(int) for i in ids])  # e kept: its id stays its own
    return cache[key][1]


def _select(e, ins, batch, cache):
    n = _SELECTIONS[e.primitive.name]
    data = tuple(range(len(ins) if n is None else n))
    ids = _sources(e, ins, data, cache)
    flat = [np.concatenate([getattr(ins[i], f).reshape(batch, -1) for i in data], axis=1) for f in ("lo", "hi", "nan")]
    return [Box(*(x[:, i.reshape(-1)].reshape((batch,) + i.shape) for x in flat)) for i in ids]


def _sum_like(e, ins):
    """``reduce_sum``, ``reduce_max`` and ``cumsum``: increasing, in NumPy on the batch."""
    a, name = ins[0], e.primitive.name
    if name == "cumsum":
        ax = e.params["axis"] + 1

        def f(x):
            x = np.flip(x, ax) if e.params.get("reverse") else x
            out = np.cumsum(x, axis=ax)
            return np.flip(out, ax) if e.params.get("reverse") else out

        return Box(f(a.lo), f(a.hi), f(a.nan.astype(float)) > 0)
    axes = tuple(ax + 1 for ax in e.params["axes"])
    red = np.sum if name == "reduce_sum" else np.max
    return Box(red(a.lo, axis=axes), red(a.hi, axis=axes), np.any(a.nan, axis=axes))


def _increasing_by_primitive(e, ins):
    """Run an increasing primitive on the lower bounds, on the upper bounds and on the NaN flags."""
    data = _INCREASING[e.primitive.name]
    fixed = _fixed_operands(e, ins, data)

    def run(arrays):
        def one(*rows):
            it = iter(rows)
            return e.primitive.bind(*[fixed[i] if i in fixed else next(it) for i in range(len(ins))], **e.params)

        return np.asarray(jax.vmap(one)(*arrays), float)

    return Box(run([ins[i].lo for i in data]), run([ins[i].hi for i in data]),
               run([ins[i].nan.astype(float) for i in data]) > 0)


def _equation(e, ins, batch, cache):
    name = e.primitive.name
    if e.primitive in CALL_PRIMITIVES:
        body = e.params[CALL_PRIMITIVES[e.primitive]]
        return _run(body, ins, batch, cache)
    if name in UNARY:
        return [UNARY[name](ins[0])]
    if name in ("eq", "ne") and e.invars[0] is e.invars[1]:  # x != x: the NaN test, exact for one variable
        same = _bool(~ins[0].nan, np.zeros(ins[0].nan.shape, bool))
        return [same if name == "eq" else _not(same)]
    if name == "mul" and e.invars[0] is e.invars[1]:  # x·x ≥ 0: one variable, not two
        return [_integer_pow(ins[0], 2)]
    if name == "pow":
        return [_pow(ins[0], ins[1])]
    if name == "rem":
        return [_rem(ins[0], ins[1], np.issubdtype(np.dtype(e.invars[0].aval.dtype), np.integer))]
    if name in BINARY:
        return [BINARY[name](ins[0], ins[1])]
    if name == "integer_pow":
        return [_integer_pow(ins[0], int(e.params["y"]))]
    if name == "square":
        return [_integer_pow(ins[0], 2)]
    if name == "select_n":
        return [_select_n(*ins)]
    if name == "convert_element_type":
        return [_convert(ins[0], e.params, np.dtype(e.invars[0].aval.dtype))]
    if name in ("reduce_and", "reduce_or", "reduce_min"):
        kind = "and" if name != "reduce_or" else "or"
        return [_reduce_logic(kind)(ins[0], e.params)]
    if name in _SELECTIONS:
        return _select(e, ins, batch, cache)
    if name in ("reduce_sum", "reduce_max", "cumsum"):
        return [_sum_like(e, ins)]
    if name in _INCREASING:
        return [_increasing_by_primitive(e, ins)]
    if name == "dot_general":
        return [_dot_general(e, ins)]
    raise NoEnclosure(f"no interval bounds for primitive '{name}'")


def _dot_general(e, ins):
    """A contraction with one known (point) operand: positive and negative parts bound it."""
    a, b = ins
    if not (a.is_point or b.is_point):
        raise NoEnclosure("dot_general of two unknown operands")
    known, other, known_first = (a, b, True) if a.is_point else (b, a, False)
    k = known.lo[0]
    pos, negp = np.maximum(k, 0.0), np.minimum(k, 0.0)

    def dot(m, rows):
        f = (lambda r: lax.dot_general(m, r, e.params["dimension_numbers"])) if known_first else (
            lambda r: lax.dot_general(r, m, e.params["dimension_numbers"]))
        return np.asarray(jax.vmap(f)(rows), float)

    lo_in = np.where(np.isinf(other.lo), -1e308, other.lo)  # ∞·0 would make NaN bounds
    hi_in = np.where(np.isinf(other.hi), 1e308, other.hi)
    with np.errstate(over="ignore"):
        lo = dot(pos, lo_in) + dot(negp, hi_in)
        hi = dot(pos, hi_in) + dot(negp, lo_in)
    nan = dot(np.abs(k) + 1.0, other.nan.astype(float) + _infinite(other)) > 0
    return Box(np.where(nan, -np.inf, lo), np.where(nan, np.inf, hi), nan)


def _run(closed, ins, batch, cache):
    jaxpr, consts = jaxpr_parts(closed)
    env = {}

    def read(v):
        if isinstance(v, Literal):
            return point(v.val, batch)
        return env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = point(np.asarray(c), batch)
    for v, box in zip(jaxpr.invars, ins):
        env[v] = box
    for e in jaxpr.eqns:
        outs = _equation(e, [read(v) for v in e.invars], batch, cache)
        for v, box in zip(e.outvars, outs):
            env[v] = box
    return [read(v) for v in jaxpr.outvars]


def enclose(closed, boxes, cache=None):
    """The boxes of ``closed``'s outputs, given one :class:`Box` per input (same batch size).

    Raises :class:`NoEnclosure` (naming the primitive) where some equation has no bounds.
    ``cache``: a dict kept between calls on the same ``closed`` (what selections copy).
    """
    batch = boxes[0].lo.shape[0]
    try:
        return _run(closed, list(boxes), batch, {} if cache is None else cache)
    except (ValueError, TypeError, KeyError) as err:  # shapes or dtypes a rule did not foresee
        raise NoEnclosure(f"interval bounds failed: {err}") from None
