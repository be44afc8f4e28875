"""Strictly monotone univariate relations solved numerically: ``z = F(x)``.

``x + sin x``, Kepler's ``M = E − e·sin E`` and ``x⁵ + x`` use their unknown
more than once and have no closed-form inverse, but each has exactly one
preimage because ``F`` is strictly monotone. ppinv *proves* that at build time
— interval arithmetic on ``F′`` over the whole support of ``x`` (and of the
known inputs ``F`` reads) shows ``F′ ≥ 0`` or ``F′ ≤ 0``; every primitive here
is analytic, so ``F′`` vanishes only at isolated points and ``F`` is strictly
monotone — and refuses the block otherwise, since a non-monotone ``F`` has
preimages one numeric solve would miss. Interval bounds are conservative: a
variable met twice in a quotient (``x / (1 + x)``) can hide monotonicity, and
such relations are refused with the reason.

At run time ``F(x) = z`` is solved elementwise by Newton's method safeguarded
by bisection on a bracket (found by doubling) in the unconstrained coordinate
of ``x``'s support, to round-off; the search is oriented by the direction of that
support's bijection too (``less_than``'s decreases). θ is empty; ``log|dx/dz| = −log|F′(x)|``;
derivatives with respect to ``z`` and the known inputs come from the implicit
function theorem (``lax.custom_root``). When no root exists (``z`` outside the
range of ``F``) the solve is "not ok".
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ._ir import inputs_from_outside
from .theta import support_bounds

__all__ = ["derivative_sign", "MonotoneBlock", "is_elementwise_analytic", "unary_jet", "monotone_bounds",
           "default_jets"]

_INF = math.inf


# --- interval arithmetic ------------------------------------------------------------------
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


def _table(table):
    if table is None:  # the rules package imports this module: look the table up when asked
        from .rules import current_table

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


# --- the block ------------------------------------------------------------------------------
def _direction(transform, shape, dtype):
    """+1 where the elementwise bijection ``transform`` increases, −1 where it decreases
    (the sign of its derivative at 0; each element's map is monotone)."""
    u = jnp.zeros(shape, dtype)
    slope = jax.jvp(lambda t: transform(t).astype(dtype), (u,), (jnp.ones_like(u),))[1]
    return lax.stop_gradient(jnp.where(slope < 0, -1.0, 1.0).astype(dtype))


def _tangent_solve(linear, y):
    """``y / F′(x)``, elementwise. Where ``F′(x) = 0`` the solve is not ok (no root found, or a
    critical point); dividing by 1 there keeps NaN out of the derivatives of the pieces a
    piecewise solve computes and does not pick."""
    d = linear(jnp.ones_like(y))
    return y / jnp.where(d != 0, d, 1.0)


class MonotoneBlock:
    """Solve ``anchor`` (known output) for the single leaf of a strictly monotone cone."""

    max_bracket_steps = 1100  # doublings: enough to reach any float64 magnitude
    max_iterations = 200

    def __init__(self, anchor, eqns, leaf, leaf_support, sign, origin):
        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self.leaf = leaf
        self.sign = sign
        self.support = leaf_support if leaf_support is not None else constraints.real
        self.known_inputs = inputs_from_outside(self.eqns, leaf)
        self.theta = ()
        kind = "increasing" if sign > 0 else "decreasing"
        self.description = f"solve a strictly {kind} function of {leaf!r} numerically (Newton on a bracket)"

    def _forward(self, known_env, x):
        env = {self.leaf: x}
        for e in self.eqns:
            vals = [v.value if v.is_const else (env[v] if v in env else known_env[v]) for v in e.ins]
            (env[e.outs[0]],) = e.bind(*vals)
        return env[self.anchor.outs[0]]

    def _derivative(self, known_env, x):
        return jax.jvp(lambda t: self._forward(known_env, t), (x,), (jnp.ones_like(x),))[1]

    def _search(self, g, shape, dtype):
        """Root of the increasing elementwise ``g`` on the real line (u, the unconstrained
        coordinate of the support)."""
        one = jnp.ones(shape, dtype)
        lo, hi = -one, one
        glo, ghi = g(lo), g(hi)
        finfo = jnp.finfo(dtype)

        def bracket_cond(s):
            k, lo, hi, glo, ghi = s
            return (k < self.max_bracket_steps) & jnp.any((glo > 0) | (ghi < 0))

        def bracket_body(s):
            k, lo, hi, glo, ghi = s
            move_lo = glo > 0
            move_hi = ghi < 0
            nlo = jnp.where(move_lo, jnp.maximum(2 * lo, -finfo.max), lo)  # lo < 0 < hi throughout
            nhi = jnp.where(move_hi, jnp.minimum(2 * hi, finfo.max), hi)
            return k + 1, nlo, nhi, g(nlo), g(nhi)

        _, lo, hi, glo, ghi = lax.while_loop(bracket_cond, bracket_body, (0, lo, hi, glo, ghi))
        found = (glo <= 0) & (ghi >= 0)

        gprime = jax.grad(lambda t: jnp.sum(g(t)))
        u0 = jnp.where(glo == 0, lo, jnp.where(ghi == 0, hi, 0.5 * lo + 0.5 * hi))

        def width_done(lo, hi):
            return (hi - lo) <= 4 * finfo.eps * jnp.maximum(jnp.abs(lo), jnp.abs(hi)) + finfo.tiny

        def cond(s):
            k, lo, hi, u, gu = s
            return (k < self.max_iterations) & jnp.any(found & (gu != 0) & ~width_done(lo, hi))

        def body(s):
            k, lo, hi, u, gu = s
            lo = jnp.where(gu < 0, u, lo)
            hi = jnp.where(gu > 0, u, hi)
            step = gu / gprime(u)
            cand = u - step
            bisect = ~jnp.isfinite(cand) | (cand <= lo) | (cand >= hi)
            cand = jnp.where(bisect, 0.5 * lo + 0.5 * hi, cand)
            return k + 1, lo, hi, cand, g(cand)

        _, lo, hi, u, gu = lax.while_loop(cond, body, (0, lo, hi, u0, g(u0)))
        return u, found

    def solve(self, known_env, z, theta=()):
        z = jnp.asarray(z)
        dtype = self.leaf.dtype
        shape = self.leaf.shape
        transform = biject_to(self.support)
        # F∘T increases in u when F and the support's bijection T run the same way: T falls
        # for less_than (c − eᵘ), so the search must see −F there
        sign = self.sign * _direction(transform, shape, dtype)

        def residual(x):
            return self._forward(known_env, x) - z

        def solve_fn(f, x_guess):
            def g(u):
                return sign * f(transform(u).astype(dtype))

            u, _ = self._search(g, shape, dtype)
            return transform(u).astype(dtype)

        x = lax.custom_root(residual, jnp.zeros(shape, dtype), solve_fn, _tangent_solve)
        fx = self._forward(known_env, x)
        d = self._derivative(known_env, x)
        finfo = jnp.finfo(dtype)
        # converged to round-off: the residual is at the scale of the terms of F at x
        scale = jnp.abs(z) + jnp.abs(d * x) + 1.0
        ok = jnp.all((jnp.abs(fx - z) <= 64 * finfo.eps * scale) & (d != 0) & jnp.isfinite(x))
        ok = ok & jnp.all(self.support.check(x))
        ld = -jnp.sum(jnp.log(jnp.where(d != 0, jnp.abs(d), 1.0)))
        return x, ld, ok

    def pgf(self, known_env, x):
        return ()
