"""Interval values and the elementwise rules of :mod:`ppinv.geometry.enclosure`.

A :class:`Box` holds, per element and per row of a batch, ``lo ≤ value ≤ hi`` in the extended
reals and a flag ``nan`` (the value may be NaN); booleans are ``[0, 1]`` intervals. The rules
here bound one elementwise primitive from the boxes of its operands: arithmetic, the
transcendental functions with their domains, comparisons and logic in three values (certainly
true, certainly false, unknown), selects and conversions.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Box", "NoEnclosure", "point", "UNARY", "BINARY"]

_PI = math.pi

class NoEnclosure(Exception):
    """A primitive (named in the message) that this module cannot bound."""


class Box:
    """``lo``, ``hi`` (float64 arrays, batch axis first) and ``nan`` (bool): one value per box."""

    __slots__ = ("lo", "hi", "nan")

    def __init__(self, lo, hi, nan=None):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        bad = np.isnan(lo) | np.isnan(hi)  # an undefined bound: anything, and maybe NaN
        self.lo = np.where(bad, -np.inf, lo)
        self.hi = np.where(bad, np.inf, hi)
        self.nan = bad if nan is None else (np.asarray(nan, bool) | bad)

    @property
    def is_point(self):
        return bool(np.all(self.lo == self.hi) and not np.any(self.nan))

    def certainly(self):
        """A boolean output: ``(certainly true, certainly false)`` per element."""
        return (self.lo > 0) & ~self.nan, self.hi <= 0


def point(value, batch):
    """A box holding exactly ``value`` (broadcast over ``batch`` rows)."""
    v = np.asarray(value, float)
    v = np.broadcast_to(v, (batch,) + v.shape)
    return Box(v, v, np.isnan(v))


def _bool(true, false):
    """The box of a boolean known ``true``/``false`` where flagged (unknown elsewhere)."""
    return Box(np.where(true, 1.0, 0.0), np.where(false, 0.0, 1.0), np.zeros(np.shape(true), bool))


# --- arithmetic ------------------------------------------------------------------------------------
def _add(a, b):
    return Box(a.lo + b.lo, a.hi + b.hi, a.nan | b.nan)  # inf − inf makes a NaN bound: flagged


def _neg(a):
    return Box(-a.hi, -a.lo, a.nan)


def _has(a, x):
    return (a.lo <= x) & (x <= a.hi)


def _infinite(a):
    return np.isinf(a.lo) | np.isinf(a.hi)


def _mul(a, b):
    with np.errstate(invalid="ignore"):
        corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    zero_inf = (_has(a, 0.0) & _infinite(b)) | (_has(b, 0.0) & _infinite(a))  # 0·∞ is NaN
    corners = [np.where(np.isnan(c), 0.0, c) for c in corners]
    return Box(np.minimum.reduce(corners), np.maximum.reduce(corners), a.nan | b.nan | zero_inf)


def _div(a, b):
    with np.errstate(divide="ignore"):
        inv = Box(1.0 / b.hi, 1.0 / b.lo, b.nan)
    straddles = _has(b, 0.0)
    q = _mul(a, inv)
    both_infinite = _infinite(a) & _infinite(b)
    nan = q.nan | (straddles & _has(a, 0.0)) | both_infinite
    return Box(np.where(straddles, -np.inf, q.lo), np.where(straddles, np.inf, q.hi), nan)


def _abs(a):
    lo = np.where(_has(a, 0.0), 0.0, np.minimum(np.abs(a.lo), np.abs(a.hi)))
    return Box(lo, np.maximum(np.abs(a.lo), np.abs(a.hi)), a.nan)


def _increasing(fn, domain=(-np.inf, np.inf)):
    """An increasing function on ``domain`` (NaN outside it): bounds at the clipped ends."""
    lo_d, hi_d = domain

    def rule(a):
        outside = (a.lo < lo_d) | (a.hi > hi_d)
        empty = (a.hi < lo_d) | (a.lo > hi_d)
        with np.errstate(all="ignore"):
            lo, hi = fn(np.clip(a.lo, lo_d, hi_d)), fn(np.clip(a.hi, lo_d, hi_d))
        return Box(np.where(empty, -np.inf, lo), np.where(empty, np.inf, hi), a.nan | outside)

    return rule


def _decreasing(fn, domain):
    inc = _increasing(lambda x: -fn(x), domain)
    return lambda a: _neg(inc(a))


def _periodic(fn, phase):
    """``sin`` (phase 0) or ``cos`` (phase π/2: cos x = sin(x + π/2)): its values at the ends, and
    ±1 where a maximum or a minimum lies inside the box."""

    def rule(a):
        x_lo, x_hi = a.lo + phase, a.hi + phase
        with np.errstate(invalid="ignore"):
            ends = np.stack([fn(a.lo), fn(a.hi)])
            k_max = np.ceil((x_lo - _PI / 2) / (2 * _PI))  # first maximum at or after x_lo
            k_min = np.ceil((x_lo + _PI / 2) / (2 * _PI))
            has_max = (k_max * 2 * _PI + _PI / 2) <= x_hi
            has_min = (k_min * 2 * _PI - _PI / 2) <= x_hi
        wide = _infinite(a) | ~(x_hi - x_lo < 2 * _PI)
        lo = np.where(wide | has_min, -1.0, ends.min(axis=0))
        hi = np.where(wide | has_max, 1.0, ends.max(axis=0))
        return Box(lo, hi, a.nan | _infinite(a))

    return rule


def _atan2(y, x):
    """The angle of a box of points: atan of a quotient away from the negative x-axis, else [−π, π]."""
    with np.errstate(all="ignore"):
        right = _increasing(np.arctan)(_div(y, x))  # x > 0
        ratio = _increasing(np.arctan)(_div(x, y))
    up = Box(_PI / 2 - ratio.hi, _PI / 2 - ratio.lo)  # y > 0: π/2 − atan(x / y)
    down = Box(-_PI / 2 - ratio.hi, -_PI / 2 - ratio.lo)  # y < 0
    lo = np.where(x.lo > 0, right.lo, np.where(y.lo > 0, up.lo, np.where(y.hi < 0, down.lo, -_PI)))
    hi = np.where(x.lo > 0, right.hi, np.where(y.lo > 0, up.hi, np.where(y.hi < 0, down.hi, _PI)))
    return Box(np.maximum(lo, -_PI), np.minimum(hi, _PI), y.nan | x.nan)


def _integer_pow(a, y):
    if y % 2 == 1:
        return _increasing(lambda v: v**y)(a)
    m = _abs(a)
    with np.errstate(over="ignore"):
        return Box(m.lo**y, m.hi**y, a.nan)


def _pow(a, b):
    """``a ** k`` for a known exponent ``k`` (one value): whole ``k`` as integer powers, others
    on ``a ≥ 0`` (NaN below), increasing for ``k > 0`` and decreasing for ``k < 0``."""
    ks = np.unique(b.lo)
    if not b.is_point or ks.size != 1:
        raise NoEnclosure("pow with an exponent that is not one known value")
    k = float(ks[0])
    if k.is_integer() and k >= 0:
        return _integer_pow(a, int(k)) if k > 0 else Box(np.ones_like(a.lo), np.ones_like(a.lo), a.nan)
    if k > 0:
        return _increasing(lambda v: v**k, (0.0, np.inf))(a)
    if k.is_integer():
        raise NoEnclosure("pow with a negative whole exponent")
    with np.errstate(divide="ignore"):
        return _decreasing(lambda v: v**k, (0.0, np.inf))(a)


def _min(a, b):
    return Box(np.minimum(a.lo, b.lo), np.minimum(a.hi, b.hi), a.nan | b.nan)


def _rem(a, b, whole=False):
    """``a`` mod ``b`` with C's sign (that of ``a``); whole numbers (``whole``: an integer dtype)
    modulo ±1 are exactly 0."""
    whole = whole or bool(np.all(np.floor(a.lo) == a.lo) and np.all(a.lo == a.hi))
    if whole and b.is_point and np.all(np.abs(b.lo) == 1) and not np.any(a.nan):
        return Box(np.zeros_like(a.lo), np.zeros_like(a.lo))
    m = np.maximum(np.abs(b.lo), np.abs(b.hi))
    lo = np.where(a.lo >= 0, 0.0, -m)
    hi = np.where(a.hi <= 0, 0.0, m)
    return Box(lo, hi, a.nan | b.nan | _has(b, 0.0) | _infinite(a))


# --- comparisons and logic -------------------------------------------------------------------------
def _lt(a, b):
    return _bool((a.hi < b.lo) & ~a.nan & ~b.nan, a.lo >= b.hi)


def _le(a, b):
    return _bool((a.hi <= b.lo) & ~a.nan & ~b.nan, a.lo > b.hi)


def _eq(a, b):
    same = (a.lo == a.hi) & (b.lo == b.hi) & (a.lo == b.lo) & ~a.nan & ~b.nan
    return _bool(same, (a.hi < b.lo) | (b.hi < a.lo))


def _not(a):
    return Box(1.0 - a.hi, 1.0 - a.lo, a.nan)


def _is_finite(a):
    finite = ~a.nan & np.isfinite(a.lo) & np.isfinite(a.hi)
    return _bool(finite, (a.lo == a.hi) & np.isinf(a.lo) & ~a.nan)


def _and(a, b):
    return Box(np.minimum(a.lo, b.lo), np.minimum(a.hi, b.hi), a.nan | b.nan)


def _or(a, b):
    return Box(np.maximum(a.lo, b.lo), np.maximum(a.hi, b.hi), a.nan | b.nan)


def _select_n(pred, *cases):
    lo, hi, nan = np.full(cases[0].lo.shape, np.inf), np.full(cases[0].lo.shape, -np.inf), np.zeros(cases[0].lo.shape, bool)
    for k, case in enumerate(cases):
        chosen = (pred.lo <= k) & (k <= pred.hi)
        lo = np.where(chosen, np.minimum(lo, case.lo), lo)
        hi = np.where(chosen, np.maximum(hi, case.hi), hi)
        nan = nan | (chosen & case.nan)
    return Box(lo, hi, nan | pred.nan)


def _convert(a, params, in_dtype):
    new = np.dtype(params["new_dtype"])
    if new == np.bool_:
        return _bool(~_has(a, 0.0) & ~a.nan, (a.lo == 0) & (a.hi == 0) & ~a.nan)
    if np.issubdtype(new, np.integer) and np.issubdtype(in_dtype, np.floating):
        return Box(np.trunc(a.lo), np.trunc(a.hi), a.nan | _infinite(a))  # trunc is increasing
    return a


def _reduce_logic(kind):
    def rule(a, params):
        axes = tuple(ax + 1 for ax in params["axes"])
        red = np.min if kind == "and" else np.max
        return Box(red(a.lo, axis=axes), red(a.hi, axis=axes), np.any(a.nan, axis=axes))

    return rule


UNARY = {
    "neg": _neg,
    "abs": _abs,
    "sin": _periodic(np.sin, 0.0),
    "cos": _periodic(np.cos, _PI / 2),
    "exp": _increasing(np.exp),
    "expm1": _increasing(np.expm1),
    "log": _increasing(np.log, (0.0, np.inf)),
    "log1p": _increasing(np.log1p, (-1.0, np.inf)),
    "sqrt": _increasing(np.sqrt, (0.0, np.inf)),
    "tanh": _increasing(np.tanh),
    "logistic": _increasing(lambda v: 1.0 / (1.0 + np.exp(-v))),
    "atan": _increasing(np.arctan),
    "asin": _increasing(np.arcsin, (-1.0, 1.0)),
    "acos": _decreasing(np.arccos, (-1.0, 1.0)),
    "sign": _increasing(np.sign),
    "floor": _increasing(np.floor),
    "ceil": _increasing(np.ceil),
    "round": _increasing(np.round),
    "not": _not,
    "is_finite": _is_finite,
    "stop_gradient": lambda a: a,
    "copy": lambda a: a,
    "copy_p": lambda a: a,
}
BINARY = {
    "add": _add,
    "sub": lambda a, b: _add(a, _neg(b)),
    "mul": _mul,
    "div": _div,
    "atan2": _atan2,
    "rem": _rem,
    "min": _min,
    "max": lambda a, b: _neg(_min(_neg(a), _neg(b))),
    "lt": _lt,
    "le": _le,
    "gt": lambda a, b: _lt(b, a),
    "ge": lambda a, b: _le(b, a),
    "eq": _eq,
    "ne": lambda a, b: _not(_eq(a, b)),
    "and": _and,
    "or": _or,
}
