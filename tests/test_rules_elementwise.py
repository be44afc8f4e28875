"""Property tests of the built-in elementwise rules (rules/elementwise.py, rules/arithmetic.py).

Every rule is exercised backward (its output observed, an input unknown), in
scalar and vector form at once: each case is inverted as the program
``(s, v) -> (f(s), f(v))``, so one build covers both (binary rules use a few
forms, ``(s, v, w) -> (s * 3.0, v * -0.5, C * w)``, to cover both operand
orders and scalar and vector known operands). At fixed points
(negative values, several periods, close to the domain edges) and random ones,
:func:`ppinv.testing.check_inverse` checks

* the PGF round trip ``inv(f(x), pgf(x)) == x``,
* ``log|det|`` against ``slogdet`` of ``jax.jacfwd`` over ``(y, θ)``,

and soundness ``f(inv(y, θ)) == y`` is checked for θ drawn from its reference
distribution (the discrete choices of these rules are not perturbed by
``check_inverse``). Further tests pin down the discrete branches, the
behaviour outside the domain (−∞, never NaN, finite gradients) and the
composition with ``jit``, ``vmap`` and ``grad``.

Tolerances are float64-tight (values 1e-9 relative, log|det| 1e-8); the
points are kept where the map is well conditioned enough for that, and the
few looser tolerances say why.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.scipy.special import erf, erfinv

import ppinv
from ppinv.testing import check_inverse

PI = math.pi
RTOL = 1e-9
LD_ATOL = 1e-8
SQUARE_P = getattr(lax, "square_p", lax.integer_pow_p)


@dataclass(frozen=True)
class Case:
    id: str
    f: Callable | tuple  # one function for both forms, or one per form (scalar first)
    prim: Any  # the primitive (or primitives) the program must use
    points: tuple  # fixed: negative values, several periods, near the domain edges
    lo: float = -3.0  # random points (up to N) are drawn from [lo, hi)
    hi: float = 3.0
    bad: tuple = ()  # observations with no preimage, or a singular Jacobian: log|det| = −∞
    good: tuple = ()  # valid observations next to the domain edge: finite, finite gradients
    rtol: float = RTOL
    ld_atol: float = LD_ATOL
    dtype: Any = jnp.float64
    params: tuple = ()  # (name, value) the primitive's equation must carry

    def __str__(self):
        return self.id


C = np.tile([3.0, -0.5, 2.0, -4.0, 0.25, 1.5], 2)  # a known vector operand, with negative entries

SIGNED = (-2.5, -0.3, -1e-3, 1e-3, 0.8, 3.0)
POSITIVE = (1e-10, 1e-3, 0.25, 1.0, 2.0, 1e4)
UNIT = (-1 + 1e-9, -0.5, -1e-10, 0.0, 0.3, 1 - 1e-9)
EXPS = (-30.0, -3.2, -1e-8, 0.0, 0.7, 20.0)
PERIODS = (-7.5, -4.0, -1.2, 0.0, 0.3, PI / 2 - 1e-4, PI / 2 + 1e-4, 2.9, 5.0, 10.0)
# ``bad`` lists both points outside the domain and the singular edge points (sqrt at 0,
# sin at ±1, ...), where x exists but |dx/dy| is 0 or ∞; both give log|det| = −∞.
EVEN = dict(bad=(-1.0, 0.0), good=(1e-12,))
ODD = dict(bad=(0.0,), good=(1e-12, -1e-12))


def _ipow(k, **kw):
    return Case(f"integer_pow[{k}]", lambda x: x**k, lax.integer_pow_p, SIGNED, params=(("y", k),), **kw)


CASES = [
    # exponentials and logarithms
    Case("exp", jnp.exp, lax.exp_p, EXPS, -5, 5, bad=(-1.0, 0.0), good=(1e-300, 1e-12)),
    Case("exp2", jnp.exp2, lax.exp2_p, EXPS, -5, 5, bad=(-1.0, 0.0), good=(1e-300,)),
    Case("log", jnp.log, lax.log_p, (1e-12, 1e-3, 0.5, 1.0, 7.0, 1e6), 0.01, 10, good=(-700.0, 700.0)),
    Case("log1p", jnp.log1p, lax.log1p_p, (-1 + 1e-9, -0.5, -1e-10, 0.0, 2.0, 1e3), -0.9, 5),
    # expm1 is ill-conditioned backward far left (dx/dz = 1/(1+z) = e^{-x}): stop at -10
    Case("expm1", jnp.expm1, lax.expm1_p, (-10.0, -2.0, -1e-10, 0.0, 0.5, 20.0), -5, 5,
         bad=(-1.0, -2.0), good=(-1 + 1e-12,)),
    # roots and powers
    Case("sqrt", jnp.sqrt, lax.sqrt_p, POSITIVE, 0, 10, **EVEN),
    Case("rsqrt", lax.rsqrt, lax.rsqrt_p, POSITIVE, 0.01, 10, **EVEN),
    Case("cbrt", jnp.cbrt, lax.cbrt_p, (-8.0, -1e-6, 1e-6, 0.3, 27.0), -5, 5, **ODD),
    _ipow(-3, **ODD),
    _ipow(-2, **EVEN),
    _ipow(-1, **ODD),
    _ipow(2, **EVEN),
    _ipow(3, **ODD),
    _ipow(4, **EVEN),
    Case("square", jnp.square, SQUARE_P, SIGNED, **EVEN),
    # pow: constant integer exponent (odd, and even with a sign), constant real exponent, known base
    Case("pow[int]", (lambda s: s**3.0, lambda v: v**-2.0), lax.pow_p, SIGNED, bad=(0.0,), good=(1e-12,)),
    Case("pow[0.7]", lambda x: x**0.7, lax.pow_p, (1e-6, 0.02, 0.5, 1.0, 3.0, 50.0), 0.01, 5, **EVEN),
    Case("pow[known base]", (lambda s: 2.0**s, lambda v: 0.3**v), lax.pow_p, EXPS, -5, 5,
         bad=(-1.0, 0.0), good=(1e-300,)),
    # trigonometric: several periods, both sides of the branch edges
    Case("sin", jnp.sin, lax.sin_p, PERIODS, -10, 10,
         bad=(1.5, -1.0001, 1.0, -1.0), good=(1 - 1e-12, -1 + 1e-12)),
    Case("cos", jnp.cos, lax.cos_p, (-7.5, -4.0, -1.2, -1e-4, 1e-4, 0.3, PI - 1e-4, PI + 1e-4, 5.0, 10.0), -10, 10,
         bad=(2.0, -1.0 - 1e-9, 1.0, -1.0), good=(1 - 1e-12, -1 + 1e-12)),
    Case("tan", jnp.tan, lax.tan_p, (-7.5, -4.0, -PI / 2 + 1e-4, -1.2, 0.0, 0.3, PI / 2 - 1e-4, 2.9, 5.0, 10.0),
         -10, 10, good=(1e10, -1e10)),
    Case("asin", jnp.arcsin, lax.asin_p, UNIT, -1, 1,
         bad=(2.0, -1.6, PI / 2 + 1e-9), good=(PI / 2 - 1e-9, -PI / 2 + 1e-9)),
    Case("acos", jnp.arccos, lax.acos_p, UNIT, -1, 1, bad=(-0.1, 4.0, 0.0), good=(1e-9, PI - 1e-9)),
    # atan backward is tan near ±π/2: relative error ~|x|·eps, so |x| ≤ 1e5
    Case("atan", jnp.arctan, lax.atan_p, (-1e5, -2.0, -1e-10, 0.0, 0.3, 1e5), -10, 10,
         bad=(2.0, -PI / 2), good=(PI / 2 - 1e-9,)),
    # hyperbolic
    Case("sinh", jnp.sinh, lax.sinh_p, (-20.0, -1.0, -1e-10, 0.0, 3.0, 50.0), -5, 5, good=(1e100, -1e100)),
    Case("cosh", jnp.cosh, lax.cosh_p, (-20.0, -1.0, -1e-4, 1e-4, 0.5, 3.0, 50.0), -5, 5,
         bad=(0.5, -2.0, 1.0), good=(1 + 1e-12,)),
    # tanh backward loses |x|·e^{2|x|}·eps: stop at |x| = 8
    Case("tanh", jnp.tanh, lax.tanh_p, (-8.0, -1.0, -1e-10, 0.0, 0.3, 8.0), -3, 3,
         bad=(1.0, -1.5), good=(1 - 1e-12, -1 + 1e-12)),
    Case("asinh", jnp.arcsinh, lax.asinh_p, (-1e3, -1.0, -1e-10, 0.0, 0.5, 1e3), -5, 5, good=(700.0, -700.0)),
    Case("acosh", jnp.arccosh, lax.acosh_p, (1 + 1e-9, 1.5, 10.0, 1e6), 1, 5, bad=(-1.0, 0.0), good=(1e-9,)),
    Case("atanh", jnp.arctanh, lax.atanh_p, (-1 + 1e-6, -0.5, -1e-10, 0.0, 0.3, 1 - 1e-6), -1, 1,
         good=(30.0, -30.0)),
    # sigmoid, erf: stop where 1 − f(x) keeps enough digits
    Case("logistic", jax.nn.sigmoid, lax.logistic_p, (-30.0, -5.0, -1e-10, 0.0, 0.3, 12.0), -5, 5,
         bad=(1.5, 0.0, 1.0, -0.1), good=(1e-12, 1 - 1e-12)),
    Case("erf", erf, lax.erf_p, (-3.5, -1.0, -1e-10, 0.0, 0.2, 2.0, 3.5), -2, 2, bad=(1.0, -1.2), good=(1 - 1e-12,)),
    Case("erf_inv", erfinv, lax.erf_inv_p, UNIT, -1, 1, good=(5.0, -5.0)),
    # sign-like and identities
    Case("abs", jnp.abs, lax.abs_p, (-3.0, -1e-8, 0.0, 1e-8, 0.5, 2.0), bad=(-1.0,), good=(0.0, 1e-12)),
    Case("neg", jnp.negative, lax.neg_p, (-3.0, 0.0, 1e-8, 2.0)),
    Case("copy", jnp.copy, lax.copy_p, (-3.0, 0.0, 2.0)),
    Case("convert[f32->f64]", lambda x: x.astype(jnp.float64), lax.convert_element_type_p,
         (-3.0, -1e-8, 0.0, 0.5, 1e4), dtype=jnp.float32),
    # float64 -> float32 rounds to 24 bits: x comes back within 2^-24 ≈ 6e-8 (relative)
    Case("convert[f64->f32]", lambda x: x.astype(jnp.float32), lax.convert_element_type_p,
         (-3.0, -1e-8, 0.0, 0.5, 1e4), rtol=1e-7),
    # binary with one operand known: the known one left and right, a scalar literal or a vector
    Case("add", (lambda s: s + 2.0, lambda v: C + v), lax.add_p, SIGNED),
    Case("sub", (lambda s: 2.0 - s, lambda v: v - C), lax.sub_p, SIGNED),
    Case("mul", (lambda s: s * 3.0, lambda v: v * -0.5, lambda w: C * w), lax.mul_p, SIGNED),
    Case("div", (lambda s: 3.0 / s, lambda v: C / v, lambda w: w / -0.25), lax.div_p, SIGNED,
         bad=(0.0,), good=(1e-300, -1e-12)),
    Case("max", (lambda s: jnp.maximum(s, 0.5), lambda v: jnp.maximum(0.5, v)), lax.max_p,
         (0.5 + 1e-9, 0.6, 2.0, 100.0), 0.51, 5, bad=(0.3, 0.5), good=(0.5 + 1e-12,)),
    Case("min", (lambda s: jnp.minimum(-1.0, s), lambda v: jnp.minimum(v, -1.0)), lax.min_p,
         (-1 - 1e-9, -1.5, -20.0), -5, -1.01, bad=(-0.5, -1.0), good=(-1 - 1e-12,)),
    # the angle of (b, a): a = b·tan z on the ray b / cos z > 0; b = a / tan z on a / sin z > 0
    Case("atan2", (lambda s: jnp.arctan2(s, 2.0), lambda v: jnp.arctan2(C, v)), lax.atan2_p, SIGNED,
         bad=(2.0, 4.0, -3.5), good=(-1e-9,)),
    # the same variable on both sides
    Case("add[a+a]", lambda a: a + a, lax.add_p, SIGNED),
    Case("mul[a*a]", lambda a: a * a, lax.mul_p, SIGNED, **EVEN),
    Case("max/min[a,a]", (lambda a: jnp.maximum(a, a), lambda a: jnp.minimum(a, a)), (lax.max_p, lax.min_p), SIGNED),
]


N = 12  # vector length: one shape for every case, so eager helper ops compile once


def _vector(case):
    """The case's fixed points, then random ones up to length N."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    fixed = np.asarray(case.points, np.float64)
    return np.concatenate([fixed, rng.uniform(case.lo, case.hi, N - fixed.size)])


def _forms(f):
    forms = f if isinstance(f, tuple) else (f, f)

    def g(*args):
        return tuple(form(a) for form, a in zip(forms, args))

    return g, len(forms)


def _leaves(tree):
    return [np.asarray(t, np.float64) for t in jax.tree_util.tree_leaves(tree)]


def _rel_err(a, b):
    a = np.concatenate([np.ravel(t) for t in _leaves(a)])
    b = np.concatenate([np.ravel(t) for t in _leaves(b)])
    return float(np.max(np.abs(a - b) / (1 + np.abs(b))))


def _all_finite(tree):
    return all(np.all(np.isfinite(t)) for t in _leaves(tree))


def _program(case):
    """``(g, example args, points)``: a scalar point, then the vector (rolled) for each vector form."""
    g, n_forms = _forms(case.f)
    vec = _vector(case).astype(case.dtype)
    points = [
        (np.asarray(p, case.dtype),) + tuple(np.roll(vec, i + 5 * j) for j in range(n_forms - 1))
        for i, p in enumerate(case.points)
    ]
    return g, points[0], points


def _assert_uses(inv, case):
    prims = case.prim if isinstance(case.prim, tuple) else (case.prim,)
    used = [e.prim for e in inv.program.eqns]
    for prim in prims:
        eqns = [e for e in inv.program.eqns if e.prim is prim]
        assert eqns, f"{case.id}: the program does not use {prim} ({used})"
        for name, value in case.params:
            assert all(e.params[name] == value for e in eqns)


def _edge_observations(y, value):
    """``y`` with ``value`` observed in the scalar form, then at one element of the first vector form."""
    y = [np.asarray(t) for t in y]
    yield (np.asarray(value, y[0].dtype), *y[1:])
    v = y[1].copy()
    v[1] = value
    yield (y[0], v, *y[2:])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule(case):
    """Round trip, log|det| against the dense Jacobian, soundness for any θ, and the domain edges."""
    g, example, points = _program(case)
    inv = ppinv.inverse(g, *example)
    _assert_uses(inv, case)
    assert inv.n_theta == 0  # elementwise rules only consume discrete θ
    report = check_inverse(g, *example, inv=inv, points=points, rtol=case.rtol, log_det_atol=case.ld_atol)
    assert report.n_in_domain == len(points)
    # soundness for θ anywhere in its space (random periods and signs), not only the PGF's
    y = g(*points[-1])
    for i in range(3):
        theta = inv.sample_theta(jax.random.PRNGKey(i))
        assert bool(inv.in_domain(y, theta))
        assert _rel_err(g(*inv(y, theta)), y) <= 10 * case.rtol
    if not (case.bad or case.good):
        return
    # outside the domain: exactly −∞ (never NaN), the eager call raises; gradients stay finite,
    # there and at valid observations next to the edge
    theta = inv.pgf(*points[-1])
    grad = jax.jit(jax.grad(lambda y: inv.log_abs_det_jacobian(y, theta)))  # jit: compiled once
    for value in case.bad:
        for yb in _edge_observations(y, value):
            ld = float(inv.log_abs_det_jacobian(yb, theta))
            assert ld == -np.inf, (value, ld)
            assert not bool(inv.in_domain(yb, theta))
            assert _all_finite(grad(yb)), value
            with pytest.raises(ppinv.DomainError):
                inv(yb, theta)
    for value in case.good:
        for yg in _edge_observations(y, value):
            assert np.isfinite(float(inv.log_abs_det_jacobian(yg, theta))), value
            assert _all_finite(grad(yg)), value


# --- closed forms ----------------------------------------------------------------------------------
def test_scalar_known_operand_log_det_counts_every_element():
    """``x * 3.0`` on a vector: the literal is a scalar, the log|det| is n·(−log 3)."""
    x = jnp.array([0.5, -1.0, 2.0])
    for f, expected in [
        (lambda v: v * 3.0, -3 * math.log(3.0)),
        (lambda v: -0.5 * v, -3 * math.log(0.5)),
        (lambda v: v / 4.0, 3 * math.log(4.0)),
        (lambda v: v + 1.0, 0.0),
    ]:
        inv = ppinv.inverse(f, x)
        assert float(inv.log_abs_det_jacobian(f(x), {})) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_atanh_log_det_is_accurate_far_out():
    """log|d tanh z/dz| = −2 log cosh z; the naive log(1 − tanh²z) cancels for large |z|."""
    inv = ppinv.inverse(jnp.arctanh, 0.3)
    for z in (5.0, 15.0, 19.0, -25.0):
        expected = -2 * math.log(math.cosh(z))
        assert float(inv.log_abs_det_jacobian(z, {})) == pytest.approx(expected, rel=1e-13)


# --- discrete branches ---------------------------------------------------------------------------
def _periodic_expected(name, y, k, s):
    if name == "sin":
        return PI * k + (-1.0) ** k * np.arcsin(y)
    if name == "cos":
        return 2 * PI * k + (1 - 2 * s) * np.arccos(y)
    return np.arctan(y) + PI * k


PERIODIC = {"sin": jnp.sin, "cos": jnp.cos, "tan": jnp.tan}


@pytest.mark.parametrize("name", list(PERIODIC))
def test_periodic_branches(name):
    """The PGF finds the period (and for cos the sign) of x in several periods and
    both mirror images; every choice gives a valid preimage, all of them different."""
    f = PERIODIC[name]
    base = np.array([0.3, -1.1, 1.5])
    period = PI if name in ("sin", "tan") else 2 * PI
    js = np.arange(-3, 4)
    xs = (base[None, :] + period * js[:, None]).ravel()
    if name in ("sin", "cos"):  # the mirrored preimages: π − x for sin, −x for cos
        mirror = (PI - base) if name == "sin" else -base
        xs = np.concatenate([xs, (mirror[None, :] + period * js[:, None]).ravel()])
    inv = ppinv.inverse(f, xs)
    kinds = {s.kind: n for n, s in inv.theta_spec.items()}
    assert sorted(kinds) == (["period", "sign"] if name == "cos" else ["period"])
    theta = inv.pgf(xs)
    k = np.asarray(theta[kinds["period"]])
    if name == "cos":  # x = 2πk ± acos(cos x)
        np.testing.assert_array_equal(k, np.round(xs / (2 * PI)))
        np.testing.assert_array_equal(theta[kinds["sign"]], (xs - 2 * PI * k < 0).astype(int))
    else:  # x − πk in [−π/2, π/2]
        np.testing.assert_array_equal(k, np.round(xs / PI))
    (back,) = inv(f(xs), theta)
    np.testing.assert_allclose(back, xs, rtol=1e-12, atol=1e-12)
    # every choice of θ: a valid preimage of the same y, and all different
    choices = np.array(list(itertools.product(range(-3, 4), (0, 1) if name == "cos" else (0,))))
    choices = np.resize(choices, (xs.size, 2))  # repeat the choices over the vector
    y = np.full(xs.size, 0.3)
    theta = {kinds["period"]: jnp.asarray(choices[:, 0])}
    if name == "cos":
        theta[kinds["sign"]] = jnp.asarray(choices[:, 1])
    (x,) = inv(y, theta)
    np.testing.assert_allclose(f(x), y, rtol=1e-12)
    np.testing.assert_allclose(x, _periodic_expected(name, y, choices[:, 0], choices[:, 1]), rtol=1e-12, atol=1e-12)
    n_choices = len(set(map(tuple, choices)))
    assert len(np.unique(np.round(np.asarray(x), 6))) == n_choices


SIGN_RULES = {
    "integer_pow[4]": lambda x: x**4,
    "integer_pow[-2]": lambda x: x**-2,
    "mul[a*a]": lambda a: a * a,
    "abs": jnp.abs,
    "cosh": jnp.cosh,
}


@pytest.mark.parametrize("name", list(SIGN_RULES))
def test_sign_choice_picks_the_preimage(name):
    f = SIGN_RULES[name]
    xs = jnp.array([1.3, -1.3, 0.2, -0.2, 4.0, -4.0])
    inv = ppinv.inverse(f, xs)
    (sname,) = inv.theta_spec
    assert inv.theta_spec[sname].kind == "sign"
    y = f(xs)
    theta = inv.pgf(xs)
    np.testing.assert_array_equal(theta[sname], (np.asarray(xs) < 0).astype(int))
    (back,) = inv(y, theta)
    np.testing.assert_allclose(back, xs, rtol=1e-12)
    # both choices are valid preimages, and they differ
    (plus,) = inv(y, {sname: jnp.zeros(6, int)})
    (minus,) = inv(y, {sname: jnp.ones(6, int)})
    np.testing.assert_allclose(plus, np.abs(xs), rtol=1e-12)
    np.testing.assert_allclose(minus, -np.abs(xs), rtol=1e-12)
    np.testing.assert_allclose(f(plus), y, rtol=1e-12)
    np.testing.assert_allclose(f(minus), y, rtol=1e-12)


# --- outside the domain ---------------------------------------------------------------------------------
@pytest.mark.parametrize("f", [lambda x: x * 0.0, lambda x: 0.0 * x, lambda x: x / 0.0], ids=["x*0", "0*x", "x/0"])
def test_known_zero_factor_is_refused(f):
    """Multiplying by a known 0 (or dividing by it) has no inverse: refused when the inverse is built."""
    with pytest.raises(ppinv.InversionError, match="mul|div"):
        ppinv.inverse(f, jnp.array([0.5, -1.0]))


# --- jit, vmap, grad ---------------------------------------------------------------------------------
def _sin_and_square(a, b):
    """A period choice and a sign choice side by side."""
    return jnp.sin(a), b**2


def test_jit_vmap_grad():
    f = _sin_and_square
    x = (jnp.array([-4.0, 0.3, 2.0, 7.5]), jnp.array([-4.0, 0.3, -2.0, 7.5]))
    dfdx = (jnp.cos(x[0]), 2 * x[1])
    inv = ppinv.inverse(f, *x)
    y, theta = f(*x), inv.pgf(*x)
    x_eager = inv(y, theta)
    ld_eager = inv.log_abs_det_jacobian(y, theta)
    # jit
    for got, want in zip(jax.jit(inv)(y, theta), x_eager):
        np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_allclose(jax.jit(inv.log_abs_det_jacobian)(y, theta), ld_eager, rtol=1e-15)
    jt = jax.jit(inv.pgf)(*x)
    assert all(bool(jnp.all(jt[n] == theta[n])) for n in theta)
    # under jit, outside the domain: x is NaN and log|det| is −∞
    for y_bad in [(y[0].at[1].set(1.5), y[1]), (y[0], y[1].at[2].set(-1.0))]:
        assert all(np.all(np.isnan(v)) for v in jax.jit(inv)(y_bad, theta))
        assert float(jax.jit(inv.log_abs_det_jacobian)(y_bad, theta)) == -np.inf
    # vmap over a batch of (y, θ), and of x for the PGF
    xs = tuple(jnp.stack([v, -v, v + 0.1]) for v in x)
    ys = jax.vmap(f)(*xs)
    thetas = jax.vmap(inv.pgf)(*xs)
    for got, want in zip(jax.vmap(inv)(ys, thetas), xs):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    lds = jax.vmap(inv.log_abs_det_jacobian)(ys, thetas)
    for i in range(3):
        xi = tuple(v[i] for v in xs)
        ti = inv.pgf(*xi)
        assert all(bool(jnp.all(thetas[n][i] == ti[n])) for n in ti)
        assert float(lds[i]) == pytest.approx(float(inv.log_abs_det_jacobian(f(*xi), ti)), rel=1e-13)
    # grad: dx/dy = 1 / f'(x); d log|det| / dy against central differences
    for k in range(2):
        dxdy = jax.grad(lambda y: jnp.sum(inv(y, theta)[k]))(y)
        np.testing.assert_allclose(dxdy[k], 1.0 / dfdx[k], rtol=1e-10)
        np.testing.assert_allclose(dxdy[1 - k], 0.0, atol=1e-15)
    gld = jax.grad(lambda y: inv.log_abs_det_jacobian(y, theta))(y)
    h = 1e-7
    for k in range(2):
        fd = []
        for i in range(4):
            up, down = list(y), list(y)
            up[k], down[k] = y[k].at[i].add(h), y[k].at[i].add(-h)
            fd.append((float(inv.log_abs_det_jacobian(tuple(up), theta))
                       - float(inv.log_abs_det_jacobian(tuple(down), theta))) / (2 * h))
        np.testing.assert_allclose(gld[k], fd, rtol=1e-6, atol=1e-6)
    # grad composes with jit and vmap
    gj = jax.jit(jax.grad(lambda y: inv.log_abs_det_jacobian(y, theta)))(y)
    gv = jax.vmap(jax.grad(lambda y, t: inv.log_abs_det_jacobian(y, t)))(ys, thetas)
    for k in range(2):
        np.testing.assert_allclose(gj[k], gld[k], rtol=1e-13)
        np.testing.assert_allclose(gv[k][0], gld[k], rtol=1e-13)


# --- float32 programs -------------------------------------------------------------------------------
F32 = {
    "sin": (jnp.sin, jnp.array([-4.0, 0.3, 2.0, 7.5])),
    "integer_pow[2]": (lambda x: x**2, jnp.array([-4.0, 0.3, -2.0, 7.5])),
    "mul[x*3]": (lambda x: x * 3.0, jnp.array([-4.0, 0.3, -2.0, 7.5])),
}


@pytest.mark.parametrize("name", list(F32))
def test_float32_programs(name):
    """A float32 program (under x64) keeps float32 values and log|det|.

    Tolerances are float32's: eps = 1.2e-7 times the conditioning of these
    maps at the chosen points (< 20)."""
    f, x = F32[name]
    x = x.astype(jnp.float32)
    inv = ppinv.inverse(f, x)
    report = check_inverse(f, x, inv=inv, points=[(x,), (-x,)], rtol=3e-6, log_det_atol=3e-6)
    assert report.n_in_domain == 2
    theta = inv.pgf(x)
    (back,), ld = inv.with_log_det(f(x), theta)
    assert back.dtype == jnp.float32 and ld.dtype == jnp.float32
    assert all(jnp.issubdtype(t.dtype, jnp.integer) for t in theta.values())
