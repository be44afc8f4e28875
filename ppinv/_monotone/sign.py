"""The build-time proof that a cone is strictly monotone in its leaf: the sign of its derivative
over the supports, by interval bounds of each relation's jet, cutting the support into pieces
where the whole proves nothing (:func:`derivative_sign`)."""

from __future__ import annotations

import math

import numpy as np
from jax import lax

from ..theta import support_bounds
from .interval import _INF


def _table(table):
    if table is None:  # the rules package imports this module: look the table up when asked
        from ..rules import current_table

        table = current_table()
    return table


def _jet(eqn, table):
    return _table(table).slot("monotone", eqn.prim)


def is_elementwise_analytic(eqn, table=None) -> bool:
    """Whether ``derivative_sign`` can handle ``eqn``: one floating output, an analytic
    elementwise primitive (one with a ``monotone`` slot in ``table``, default: the active one)."""
    if len(eqn.outs) != 1 or not eqn.outs[0].is_float:
        return False
    if eqn.prim is lax.convert_element_type_p and not eqn.ins[0].is_float:
        return False
    jet = _jet(eqn, table)
    return jet is not None and jet([((0.5, 0.5), (1.0, 1.0))] * len(eqn.ins), eqn.params) is not None


def _support_interval(sup):
    """``(lo, hi)`` covering a NumPyro constraint's set (the real line when unknown)."""
    bounds = support_bounds(sup)
    return (-_INF, _INF) if bounds is None else bounds[:2]


def derivative_sign(cone, leaf, leaf_support, known_support, table=None):
    """+1 / −1 when the cone's output is provably non-decreasing / non-increasing in ``leaf``
    (and not constant) over the supports; 0 when that cannot be shown.

    ``known_support(v)`` gives the constraint of a known input (``None``: unknown range).
    Each relation's bounds come from its primitive's ``monotone`` slot in ``table`` (default:
    the active table); a primitive without one cannot be shown monotone.
    The leaf's support must be an interval element by element (the solve runs in the
    coordinate of its bijection); 0 for any other (a simplex).

    Interval bounds forget that two factors are the same variable (``u·exp(u²)``: ``u`` times a
    derivative of the sign of ``u``), so where the whole interval proves nothing it is cut into
    pieces (at 0 first, then in halves; :func:`_subdivisions`) and the sign shown on each: the
    derivative has one sign on every piece, hence on their union.
    """
    bounds = support_bounds(leaf_support)
    if bounds is None:
        return 0
    table = _table(table)
    for pieces in _subdivisions(bounds[0], bounds[1]):
        signs = {_sign_on(cone, leaf, piece, known_support, table) for piece in pieces}
        if len(signs) == 1 and 0 not in signs:
            return signs.pop()
    return 0


_MAX_SUBDIVISIONS = 5  # rounds of cutting: at most 2⁵ pieces


def _subdivisions(lo, hi):
    """The interval, then finer and finer covers of it by closed pieces: cut at 0 (where the
    sign of the leaf changes), then every bounded piece in half and every unbounded one at
    twice its finite end (so that far pieces stay unbounded)."""
    pieces = [(lo, hi)]
    yield pieces
    for _ in range(_MAX_SUBDIVISIONS):
        finer = []
        for a, b in pieces:
            if a < 0 < b:
                cut = 0.0
            elif a == -_INF and b == _INF:
                cut = 0.0
            elif b == _INF:
                cut = 2.0 * a + 1.0 if a >= 0 else 0.5 * a
            elif a == -_INF:
                cut = 2.0 * b - 1.0 if b <= 0 else 0.5 * b
            else:
                cut = 0.5 * a + 0.5 * b
            finer.extend([(a, cut), (cut, b)] if a < cut < b else [(a, b)])
        if len(finer) == len(pieces):
            return
        pieces = finer
        yield pieces


def _sign_on(cone, leaf, interval, known_support, table):
    """The sign of the cone's derivative in ``leaf`` over ``interval``, by interval bounds (0: unknown)."""
    env = {leaf: (interval, (1.0, 1.0))}
    hulls = []  # constant arrays read as the interval hull of their entries

    def read(v):
        if v in env:
            return env[v]
        if v.is_const:
            val = np.asarray(v.value, dtype=float)
            if val.size > 1 and val.min() != val.max():
                hulls.append(v)
            return (float(val.min()), float(val.max())), (0.0, 0.0)
        return _support_interval(known_support(v)), (0.0, 0.0)

    for e in cone:
        jet = _jet(e, table)
        res = jet([read(v) for v in e.ins], e.params) if jet is not None else None
        if res is None:
            return 0
        if any(math.isnan(t) for pair in res for t in pair):
            return 0
        env[e.outs[0]] = res
    d = env[cone[-1].outs[0]][1] if cone else (1.0, 1.0)
    if d == (0.0, 0.0):
        return 0
    if hulls and d[0] <= 0 <= d[1]:
        # A bound over the hull of a constant's entries holds for every element, but one that
        # touches 0 may be an element whose derivative is 0 everywhere (b · [1, 0]): no proof.
        return 0
    if d[0] >= 0:
        return 1
    if d[1] <= 0:
        return -1
    return 0
