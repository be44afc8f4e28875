"""Interval enclosures of a program's Jacobian over a box of its unknowns.

Forward mode over the relations of a cone with interval arithmetic: every
array element carries the range of its value over the box and, for each unknown
entry (a direction), the range of its derivative in that entry. The elementwise
primitives take their bounds from the ``monotone`` slot of the rule table — the
scalar jets of ``_monotone/jets.py`` (add, sub, mul, div, neg, exp, log, tanh,
logistic, sin/cos, integer powers, ...), applied element by element and once per
direction — and this module adds the structural primitives that move elements
without computing (broadcasts, reshapes, slices, concatenation, transposes), the
sums and contractions that add products of them (``reduce_sum``,
``dot_general``) and real powers by a constant exponent. A relation with any
other primitive, or whose bounds are undefined somewhere in the box (a log
reaching 0, a quotient whose denominator may vanish), has no enclosure:
:func:`jacobian_enclosure` returns ``None``.

The bounds are conservative (a variable met twice forgets that it is the same
variable) and not outward-rounded; a certificate built on them keeps a relative
margin (``ppinv.joint.newton``).
"""

from __future__ import annotations

import math

import numpy as np
from jax import lax

from ._monotone import _add, _mul, _power_bounds, _table
from .theta import support_bounds

__all__ = ["box_of", "has_enclosure", "jacobian_enclosure"]

_INF = math.inf
_ZERO = (0.0, 0.0)


class _NoEnclosure(Exception):
    pass


# A cell is (value range, (derivative range per direction)); an array of cells is an object array.
def _cells(shape, fn):
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = fn(idx)
    return out


def _constant(value, n):
    value = np.asarray(value, dtype=float)
    return _cells(value.shape, lambda idx: ((float(value[idx]), float(value[idx])), (_ZERO,) * n))


def _ranged(lo, hi, shape, n):
    lo, hi = np.broadcast_to(np.asarray(lo, float), shape), np.broadcast_to(np.asarray(hi, float), shape)
    return _cells(shape, lambda idx: ((float(lo[idx]), float(hi[idx])), (_ZERO,) * n))


def _sum_cells(cells):
    value, derivs = (0.0, 0.0), None
    for v, ds in cells:
        value = _add(value, v)
        derivs = ds if derivs is None else tuple(_add(a, b) for a, b in zip(derivs, ds))
    return value, derivs


def _product(a, b):
    """The cell of ``a·b``: (u·v)′ = u′·v + u·v′ in every direction."""
    (va, da), (vb, db) = a, b
    return _mul(va, vb), tuple(_add(_mul(x, vb), _mul(va, y)) for x, y in zip(da, db))


# --- elementwise primitives: the table's scalar jets, direction by direction ----------------
def _elementwise(jet, args, params, shape, n):
    args = [np.broadcast_to(a, shape) for a in args]

    def cell(idx):
        operands = [a[idx] for a in args]
        value, derivs = None, []
        for c in range(n):
            got = jet([(v, ds[c]) for v, ds in operands], params)
            if got is None or any(math.isnan(t) for pair in got for t in pair):
                raise _NoEnclosure
            value = got[0]
            derivs.append(got[1])
        return value, tuple(derivs)

    return _cells(shape, cell)


def _real_power(t, k):
    """``t ** k`` for ``t ≥ 0`` (Python floats), with its limits at 0 and ∞."""
    if t == _INF:
        return _INF if k > 0 else (1.0 if k == 0 else 0.0)
    if t == 0:
        return 0.0 if k > 0 else (1.0 if k == 0 else _INF)
    return t**k


def _pow_constant(args, shape, exponent):
    """``x ** k`` with a constant scalar ``k``: a whole ``k ≥ 1`` anywhere, any other where the
    box keeps ``x ≥ 0`` (``x > 0`` when ``k < 1``: the derivative is unbounded at 0)."""
    k = float(exponent)
    base = np.broadcast_to(args[0], shape)

    def cell(idx):
        (lo, hi), ds = base[idx]
        if k.is_integer() and k >= 1:
            value, factor = _power_bounds(int(k))((lo, hi), {"y": int(k)})
        elif lo > 0 or (lo == 0 and k >= 1):
            value = tuple(sorted((_real_power(lo, k), _real_power(hi, k))))
            factor = tuple(sorted((k * _real_power(lo, k - 1), k * _real_power(hi, k - 1))))
        else:
            raise _NoEnclosure
        return value, tuple(_mul(factor, d) for d in ds)

    return _cells(shape, cell)


# --- structural primitives --------------------------------------------------------------
def _broadcast_in_dim(x, params):
    shape, dims = tuple(params["shape"]), tuple(params["broadcast_dimensions"])
    kept = x.shape

    def cell(idx):
        return x[tuple(0 if kept[i] == 1 else idx[d] for i, d in enumerate(dims))]

    return _cells(shape, cell)


def _reduce_sum(x, params):
    axes = tuple(params["axes"])
    keep = [i for i in range(x.ndim) if i not in axes]
    shape = tuple(x.shape[i] for i in keep)
    moved = np.moveaxis(x, keep, list(range(len(keep)))) if keep else x
    flat = moved.reshape(shape + (-1,))
    return _cells(shape, lambda idx: _sum_cells(list(flat[idx])))


def _dot_general(a, b, params):
    (lc, rc), (lb, rb) = params["dimension_numbers"]
    lf = [i for i in range(a.ndim) if i not in lc and i not in lb]
    rf = [i for i in range(b.ndim) if i not in rc and i not in rb]
    a2 = np.transpose(a, list(lb) + lf + list(lc))
    b2 = np.transpose(b, list(rb) + rf + list(rc))
    nb, nlf = len(lb), len(lf)
    batch = a2.shape[:nb]
    shape = batch + a2.shape[nb:nb + nlf] + b2.shape[nb:nb + len(rf)]
    csize = int(np.prod([a.shape[i] for i in lc], dtype=int))
    a3 = a2.reshape(a2.shape[:nb + nlf] + (csize,))
    b3 = b2.reshape(b2.shape[:nb + len(rf)] + (csize,))

    def cell(idx):
        bi, li, ri = idx[:nb], idx[nb:nb + nlf], idx[nb + nlf:]
        return _sum_cells([_product(a3[bi + li][k], b3[bi + ri][k]) for k in range(csize)])

    return _cells(shape, cell)


def _slice(x, params):
    strides = params.get("strides") or (1,) * x.ndim
    return x[tuple(slice(s, e, k) for s, e, k in zip(params["start_indices"], params["limit_indices"], strides))]


def _structural():
    ops = {
        lax.broadcast_in_dim_p: lambda xs, p: _broadcast_in_dim(xs[0], p),
        lax.reshape_p: lambda xs, p: xs[0].reshape(tuple(p["new_sizes"])),
        lax.squeeze_p: lambda xs, p: np.squeeze(xs[0], axis=tuple(p["dimensions"])),
        lax.transpose_p: lambda xs, p: np.transpose(xs[0], tuple(p["permutation"])),
        lax.slice_p: lambda xs, p: _slice(xs[0], p),
        lax.concatenate_p: lambda xs, p: np.concatenate(xs, axis=p["dimension"]),
        lax.reduce_sum_p: lambda xs, p: _reduce_sum(xs[0], p),
        lax.dot_general_p: lambda xs, p: _dot_general(xs[0], xs[1], p),
    }
    if hasattr(lax, "expand_dims_p"):
        ops[lax.expand_dims_p] = lambda xs, p: np.expand_dims(xs[0], tuple(p["dimensions"]))
    return ops


_STRUCTURAL = _structural()


def has_enclosure(eqn, table=None) -> bool:
    """Whether :func:`jacobian_enclosure` can pass through ``eqn`` (one floating output; a
    structural primitive, a constant real power, or one with a ``monotone`` slot)."""
    if len(eqn.outs) != 1 or not eqn.outs[0].is_float or not all(v.is_float for v in eqn.ins):
        return False
    if eqn.prim in _STRUCTURAL:
        return True
    if eqn.prim is lax.pow_p:
        k = eqn.ins[1]
        return k.is_const and np.ndim(k.value) == 0
    return _table(table).slot("monotone", eqn.prim) is not None


def box_of(support):
    """``(lo, hi)`` of a NumPyro constraint's interval hull (the real line when unknown), or
    ``None`` when it is not an interval element by element."""
    bounds = support_bounds(support)
    return None if bounds is None else (bounds[0], bounds[1])


def jacobian_enclosure(eqns, leaves, boxes, outputs, known_box, table=None):
    """An interval matrix holding ``∂ outputs / ∂ leaves`` over the box, as ``(lo, hi)`` arrays
    (rows: the outputs' entries, columns: the leaves' entries, both flattened in order); ``None``
    when some relation of ``eqns`` (program order) has no enclosure there.

    ``boxes[i]`` is ``(lo, hi)`` (arrays broadcasting to the leaf's shape) for ``leaves[i]``;
    ``known_box(v)`` the ``(lo, hi)`` of a known, non-constant input.
    """
    table = _table(table)
    n = sum(v.size for v in leaves)
    env, start = {}, 0
    for v, (lo, hi) in zip(leaves, boxes):
        lo, hi = np.broadcast_to(np.asarray(lo, float), v.shape), np.broadcast_to(np.asarray(hi, float), v.shape)

        def seed(idx, v=v, lo=lo, hi=hi, start=start):
            j = start + (int(np.ravel_multi_index(idx, v.shape)) if v.shape else 0)
            return (float(lo[idx]), float(hi[idx])), tuple((1.0, 1.0) if c == j else _ZERO for c in range(n))

        env[v] = _cells(v.shape, seed)
        start += v.size

    def read(v):
        if v in env:
            return env[v]
        if v.is_const:
            return _constant(v.value, n)
        lo, hi = known_box(v)
        return _ranged(lo, hi, v.shape, n)

    try:
        for e in eqns:
            env[e.outs[0]] = _apply(e, [read(v) for v in e.ins], table, n)
    except (_NoEnclosure, KeyError, ValueError, TypeError):
        return None
    rows = [cell for v in outputs for cell in np.asarray(read(v)).reshape(-1)]
    lo = np.array([[d[0] for d in ds] for _, ds in rows], dtype=float).reshape(len(rows), n)
    hi = np.array([[d[1] for d in ds] for _, ds in rows], dtype=float).reshape(len(rows), n)
    if np.isnan(lo).any() or np.isnan(hi).any():
        return None
    return lo, hi


def _apply(e, args, table, n):
    shape = e.outs[0].shape
    if e.prim in _STRUCTURAL:
        out = _STRUCTURAL[e.prim](args, e.params)
    elif e.prim is lax.pow_p:
        out = _pow_constant(args, shape, np.asarray(e.ins[1].value))
    else:
        jet = table.slot("monotone", e.prim)
        if jet is None:
            raise _NoEnclosure
        out = _elementwise(jet, args, e.params, shape, n)
    out = np.asarray(out, dtype=object)
    if out.shape != shape:
        raise _NoEnclosure
    return out
