"""The interval on which a predicate selects a case of a piecewise function (:func:`piece_support`):
each case is scheduled on its own piece of the leaf's support."""

from __future__ import annotations

import jax
import numpy as np
from jax import lax


#: a comparison ``x op c`` with ``x`` on the right reads as ``c op' x``
_FLIPPED = {lax.lt_p: lax.gt_p, lax.le_p: lax.ge_p, lax.gt_p: lax.lt_p, lax.ge_p: lax.le_p}
_EMPTY = object()  # the predicate selects the case nowhere in the support


_AFFINE_STEPS = (lax.neg_p, lax.add_p, lax.sub_p, lax.mul_p, lax.div_p, lax.convert_element_type_p)


def _affine_chain(prog, u, x):
    """The relations of ``prog`` computing ``u`` from ``x`` when each is affine in its one
    variable operand with scalar constants (``−x``, ``a·x``, ``x − b``, ``x / a``); else ``None``."""
    definer = {o: e for e in prog.eqns for o in e.outs}
    chain = []
    while u is not x:
        e = definer.get(u)
        if e is None or e.prim not in _AFFINE_STEPS or not u.is_float:
            return None
        var = [i for i, v in enumerate(e.ins) if not v.is_const]
        if len(var) != 1 or any(np.size(v.value) != 1 for v in e.ins if v.is_const):
            return None
        if e.prim is lax.div_p and var != [0]:
            return None  # c / x is not affine
        chain.append(e)
        u = e.ins[var[0]]
    return chain[::-1]


def _run_chain(chain, x, t):
    env = {x: np.asarray(t, x.dtype)}
    with jax.ensure_compile_time_eval():
        for e in chain:
            (env[e.outs[0]],) = e.bind(*[v.value if v.is_const else env[v] for v in e.ins])
    return float(np.asarray(env[chain[-1].outs[0]] if chain else env[x]))


def _comparison_interval(prog, k):
    """``(lo, hi, lo_closed, hi_closed)`` holding the leaf wherever the scalar predicate program
    ``prog`` (of the leaf ``prog.invars[0]``) equals ``k``, when it compares an affine function of
    the leaf with a constant; else ``None``. A threshold carried back through an affine map is
    rounded, so the interval is widened by a few ulps (the predicate is re-checked on the
    recovered value; the interval only has to hold the piece)."""
    x, out = prog.invars[0], prog.outvars[0]
    cmp = next((e for e in prog.eqns if e.prim in _FLIPPED), None)
    if cmp is None or k not in (0, 1):
        return None
    tail = [e for e in prog.eqns if e is not cmp and e.outs[0] is out]
    if cmp.outs[0] is not out and not (len(tail) == 1 and tail[0].prim is lax.convert_element_type_p
                                       and tail[0].ins[0] is cmp.outs[0]):
        return None  # the comparison is not the predicate (a bool used as an index is)
    a, b = cmp.ins
    if not a.is_const and b.is_const:
        op, u, c = cmp.prim, a, b.value
    elif a.is_const and not b.is_const:
        op, u, c = _FLIPPED[cmp.prim], b, a.value
    else:
        return None
    chain = _affine_chain(prog, u, x)
    if chain is None or np.size(c) != 1 or len(chain) + 1 + len(tail) != len(prog.eqns):
        return None
    c = float(np.asarray(c).reshape(()))
    slope = _run_chain(chain, x, 1.0) - _run_chain(chain, x, 0.0)
    if not np.isfinite(slope) or slope == 0 or not np.isfinite(c):
        return None
    t = c if not chain else (c - _run_chain(chain, x, 0.0)) / slope
    if slope < 0:
        op = _FLIPPED[op]
    widen = 0.0 if not chain else 16 * np.finfo(np.float64).eps * max(abs(t), 1.0)
    inf = np.inf
    below_open, below_closed = (-inf, t + widen, False, widen > 0), (-inf, t + widen, False, True)
    above_open, above_closed = (t - widen, inf, widen > 0, False), (t - widen, inf, True, False)
    true_false = {lax.lt_p: (below_open, above_closed), lax.le_p: (below_closed, above_open),
                  lax.gt_p: (above_open, below_closed), lax.ge_p: (above_closed, below_open)}[op]
    return true_false[0] if k == 1 else true_false[1]


def piece_support(pred_prog, k, support):
    """The support of the leaf on case ``k`` of a piecewise function: ``support`` narrowed to
    where the predicate selects ``k`` (:func:`_comparison_interval`); ``support`` itself when
    the predicate says nothing of the kind; ``_EMPTY`` when the two do not meet."""
    from ..theta import _base, support_bounds, support_from_bounds

    support = _base(support)  # the case's program is on scalars
    outer = support_bounds(support)
    if outer is None:
        return None  # not an interval element by element (a simplex): nothing to say of one element
    piece = _comparison_interval(pred_prog, k)
    if piece is None:
        return support
    lo, lo_closed = max((piece[0], piece[2]), (outer[0], outer[2]), key=lambda b: (b[0], not b[1]))
    hi, hi_closed = min((piece[1], piece[3]), (outer[1], outer[3]), key=lambda b: (b[0], b[1]))
    if lo > hi or (lo == hi and not (lo_closed and hi_closed)):
        return _EMPTY
    narrowed = support_from_bounds(lo, hi, lo_closed, hi_closed)
    return support if narrowed is None else narrowed
