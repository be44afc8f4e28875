"""Per-primitive interval bounds, the ``monotone`` slot of the rule table: a primitive's *jet*
bounds its value and its derivative in the leaf over intervals of its inputs
(:func:`default_jets`; :func:`unary_jet` and :func:`monotone_bounds` build users' jets)."""

from __future__ import annotations

import math

import numpy as np
from jax import lax

from .interval import (
    _INF,
    _abs_range,
    _add,
    _exp,
    _mono,
    _mul,
    _neg,
    _pow,
    _recip,
    _sigmoid,
)


# --- per-primitive interval bounds (the ``monotone`` slot of the rule table) --------------
# A primitive's slot holds a *jet*: ``jet(args, params) -> (value range, derivative range)``,
# where ``args`` holds each input's (value range, range of its derivative in the leaf);
# ``None`` when the bounds cannot be given (a log of an interval reaching below 0).
def unary_jet(bounds):
    """The jet of an elementwise ``f`` from ``bounds(a, params) -> (range of f, range of f′)``
    over the interval ``a``: the chain rule multiplies ``f′`` by the input's derivative."""

    def jet(args, params):
        if len(args) != 1:
            return None
        va, da = args[0]
        got = bounds(va, params)
        if got is None:
            return None
        value, factor = got
        return value, _mul(factor, da)

    jet.bounds = bounds
    return jet


def _at(fn, t, fallback):
    """``fn(t)`` as a float, ``fallback`` where it overflows or is undefined."""
    try:
        with np.errstate(all="ignore"):
            v = float(fn(t))
    except (OverflowError, ValueError, ZeroDivisionError):
        return fallback
    return fallback if math.isnan(v) else v


def monotone_bounds(fn, derivative=None, decreasing=False):
    """``bounds`` of a strictly monotone elementwise ``fn`` (on Python floats): its range over
    ``[lo, hi]`` is between ``fn(lo)`` and ``fn(hi)``; ``derivative(lo, hi) -> (lo′, hi′)``
    bounds ``f′`` there (default: ``[0, ∞]``, or ``[−∞, 0]`` when ``decreasing``)."""

    def bounds(a, params):
        lo = _at(fn, a[0], _INF if decreasing else -_INF)
        hi = _at(fn, a[1], -_INF if decreasing else _INF)
        value = (hi, lo) if decreasing else (lo, hi)
        d = derivative(*a) if derivative is not None else ((-_INF, 0.0) if decreasing else (0.0, _INF))
        return value, (float(d[0]), float(d[1]))

    return bounds


def _exp_bounds(a, params):
    v = (_exp(a[0]), _exp(a[1]))
    return v, v


def _expm1_bounds(a, params):
    v = _mono(lambda t: math.expm1(t) if -_INF < t < 700 else (-1.0 if t == -_INF else _INF), a)
    return v, _add(v, (1.0, 1.0))


def _log_bounds(shift):
    def bounds(a, params):
        lo = a[0] + shift
        if lo < 0:
            return None  # not defined on all of the interval
        v = (math.log(lo) if lo > 0 else -_INF, math.log(a[1] + shift) if a[1] != _INF else _INF)
        d = _recip((lo, a[1] + shift)) if lo > 0 else (1.0 / (a[1] + shift) if a[1] != _INF else 0.0, _INF)
        return v, d

    return bounds


def _sqrt_bounds(a, params):
    if a[0] < 0:
        return None
    v = _mono(lambda t: math.sqrt(t) if t != _INF else _INF, a)
    d = (0.5 / v[1] if v[1] not in (0.0, _INF) else (0.0 if v[1] == _INF else _INF), 0.5 / v[0] if v[0] > 0 else _INF)
    return v, d


def _sin_cos_bounds(a, params):
    return (-1.0, 1.0), (-1.0, 1.0)


def _tanh_bounds(a, params):
    v = _mono(math.tanh, a)
    m = _abs_range(a)
    return v, (1.0 - math.tanh(m[1]) ** 2 if m[1] != _INF else 0.0, 1.0 - math.tanh(m[0]) ** 2)


def _atan_bounds(a, params):
    v = _mono(math.atan, a)
    m = _abs_range(a)
    return v, (1.0 / (1.0 + m[1] ** 2) if m[1] != _INF else 0.0, 1.0 / (1.0 + m[0] ** 2))


def _sinh_bounds(a, params):
    v = _mono(lambda t: math.sinh(t) if abs(t) < 700 else math.copysign(_INF, t), a)
    m = _abs_range(a)
    return v, (math.cosh(m[0]) if m[0] < 700 else _INF, math.cosh(m[1]) if m[1] < 700 else _INF)


def _asinh_bounds(a, params):
    v = _mono(math.asinh, a)
    m = _abs_range(a)
    return v, (1.0 / math.sqrt(1.0 + m[1] ** 2) if m[1] != _INF else 0.0, 1.0 / math.sqrt(1.0 + m[0] ** 2))


def _logistic_bounds(a, params):
    v = (_sigmoid(a[0]), _sigmoid(a[1]))
    m = _abs_range(a)
    s_far = _sigmoid(m[1]) if m[1] != _INF else 1.0
    s_near = _sigmoid(m[0])
    return v, (s_far * (1.0 - s_far), s_near * (1.0 - s_near))


def _power_bounds(k):
    def bounds(a, params):
        k_ = params["y"] if k is None else k
        if k_ < 1:
            return None
        return _pow(a, k_), _mul((float(k_), float(k_)), _pow(a, k_ - 1))

    return bounds


def _identity_bounds(a, params):
    return a, (1.0, 1.0)


def _abs_bounds(a, params):
    """|u| on an interval of one sign is ±u there (analytic); across 0 it is not: no bounds, since
    ``x − |x|`` would pass for non-decreasing while constant on a whole half-line."""
    if a[0] >= 0:
        return a, (1.0, 1.0)
    if a[1] <= 0:
        return _neg(a), (-1.0, -1.0)
    return None


# -- arithmetic: (value, derivative) of each operand -------------------------------------
def _add_jet(args, params):
    (va, da), (vb, db) = args
    return _add(va, vb), _add(da, db)


def _sub_jet(args, params):
    (va, da), (vb, db) = args
    return _add(va, _neg(vb)), _add(da, _neg(db))


def _neg_jet(args, params):
    ((va, da),) = args
    return _neg(va), _neg(da)


def _mul_jet(args, params):
    (va, da), (vb, db) = args
    return _mul(va, vb), _add(_mul(da, vb), _mul(va, db))


def _div_jet(args, params):
    (va, da), (vb, db) = args
    inv = _recip(vb)
    if inv is None:
        return None
    # (a/b)′ = a′/b − a·b′/b²
    return _mul(va, inv), _add(_mul(da, inv), _neg(_mul(_mul(va, db), _mul(inv, inv))))


def default_jets() -> dict:
    """The jets ppinv's default rule table registers in the ``monotone`` slot."""
    jets = {lax.add_p: _add_jet, lax.sub_p: _sub_jet, lax.neg_p: _neg_jet, lax.mul_p: _mul_jet,
            lax.div_p: _div_jet}
    unary = {
        lax.exp_p: _exp_bounds, lax.expm1_p: _expm1_bounds, lax.log_p: _log_bounds(0.0),
        lax.log1p_p: _log_bounds(1.0), lax.sqrt_p: _sqrt_bounds, lax.sin_p: _sin_cos_bounds,
        lax.cos_p: _sin_cos_bounds, lax.tanh_p: _tanh_bounds, lax.atan_p: _atan_bounds,
        lax.sinh_p: _sinh_bounds, lax.asinh_p: _asinh_bounds, lax.logistic_p: _logistic_bounds,
        lax.integer_pow_p: _power_bounds(None), lax.convert_element_type_p: _identity_bounds,
        lax.abs_p: _abs_bounds,
    }
    for name, bounds in (("square_p", _power_bounds(2)), ("copy_p", _identity_bounds)):
        if hasattr(lax, name):
            unary[getattr(lax, name)] = bounds
    jets.update({p: unary_jet(b) for p, b in unary.items()})
    return jets
