"""Interval arithmetic on ``(lo, hi)`` pairs of Python floats (``±inf`` allowed): sums, products,
reciprocals, powers and the images of monotone functions, conservative at infinities and zeros."""

from __future__ import annotations

import math

import numpy as np

_INF = math.inf


def _mul(a, b):
    """Interval product; 0 · ∞ counts as 0 (a bound that is exactly zero stays zero)."""
    ps = []
    for x in a:
        for y in b:
            ps.append(0.0 if (x == 0 or y == 0) else x * y)
    return (min(ps), max(ps))


def _add(a, b):
    lo = a[0] + b[0] if not (a[0] == -_INF and b[0] == _INF or a[0] == _INF and b[0] == -_INF) else -_INF
    hi = a[1] + b[1] if not (a[1] == -_INF and b[1] == _INF or a[1] == _INF and b[1] == -_INF) else _INF
    return (lo, hi)


def _neg(a):
    return (-a[1], -a[0])


def _recip(a):
    """Range of 1/x for x in ``a``; ``None`` when 0 lies inside the interval."""
    lo, hi = a
    if lo < 0 < hi or lo == hi == 0:
        return None
    if lo >= 0:  # 1/x falls from 1/lo (∞ at 0) to 1/hi (0 at ∞)
        return (0.0 if hi == _INF else 1.0 / hi, _INF if lo == 0 else 1.0 / lo)
    # hi ≤ 0: 1/x falls from 1/lo (0 at −∞) to 1/hi (−∞ at 0)
    return (-_INF if hi == 0 else 1.0 / hi, 0.0 if lo == -_INF else 1.0 / lo)


def _abs_range(a):
    """The range of |x| over the interval."""
    if a[0] >= 0:
        return a
    if a[1] <= 0:
        return (-a[1], -a[0])
    return (0.0, max(-a[0], a[1]))


def _mono(fn, a):
    """Image of an increasing function."""
    with np.errstate(all="ignore"):
        return (float(fn(a[0])), float(fn(a[1])))


def _pow(a, k):
    """Range of x**k (k ≥ 0 an integer)."""
    if k == 0:
        return (1.0, 1.0)
    if k % 2 == 1:
        return _mono(lambda t: t**k if abs(t) != _INF else t, a)
    m = _abs_range(a)
    return (m[0] ** k, m[1] ** k)


def _exp(t):
    """exp of a bound, overflowing to ∞ rather than raising."""
    return 0.0 if t == -_INF else (math.exp(t) if t < 709 else _INF)


def _sigmoid(t):
    return 1.0 / (1.0 + math.exp(-t)) if t > -700 else 0.0
