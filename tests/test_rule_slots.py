"""Named per-primitive slots of the rule table: a primitive a user defines takes part in joint
linear and monotone solves once its ``linearity`` or ``monotone`` slot is filled, and only then."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

import ppinv
from ppinv import rules
from ppinv._block import is_linear
from ppinv._monotone import derivative_sign
from ppinv.testing import check_inverse

TOL = dict(rtol=1e-9, log_det_atol=1e-8, n_points=4, dense_points=2, grad_points=1)


def _elementwise_primitive(name, impl, jvp):
    """A JAX primitive with an implementation, a shape rule, a lowering and a batching rule
    (through ``impl``) and a JVP rule written with ordinary JAX operations, as a user would
    define one."""
    prim = Primitive(name)
    prim.def_impl(impl)
    prim.def_abstract_eval(lambda *avals: jax.core.ShapedArray(avals[0].shape, avals[0].dtype))
    mlir.register_lowering(prim, mlir.lower_fun(impl, multiple_results=False))
    batching.primitive_batchers[prim] = lambda args, dims: (
        jax.vmap(impl, [d if isinstance(d, int) else None for d in dims])(*args), 0)
    ad.primitive_jvps[prim] = lambda primals, tangents: (
        prim.bind(*primals),
        jvp(primals, [ad.instantiate_zeros(t) for t in tangents]),
    )
    return prim


# mix(a, b, w) = w·a + b − sin(w): affine in (a, b) once w is known; not in w
MIX = _elementwise_primitive(
    "user_mix",
    lambda a, b, w: w * a + b - jnp.sin(w),
    lambda p, t: p[2] * t[0] + t[1] + (p[0] - jnp.cos(p[2])) * t[2],
)
# cubic(x) = x³ + x: strictly increasing, no closed-form inverse rule registered
CUBIC = _elementwise_primitive("user_cubic", lambda x: x**3 + x, lambda p, t: (3 * p[0] ** 2 + 1) * t[0])


def mix(a, b, w):
    return MIX.bind(a, b, w)


def cubic(x):
    return CUBIC.bind(x)


def two_mixes(a, b):
    """Two observed linear combinations of a and b, one through the user primitive."""
    return mix(a, b, 3.0), a - 2.0 * b


def mixes_of_vectors(a, b):
    """Vector unknowns through the user primitive inside a larger block (6 × 6)."""
    return mix(a, b, 0.5) + jnp.flip(a), jnp.flip(b) - a


def x_plus_cubic(x):
    return x + cubic(x)


def test_a_user_primitive_is_refused_until_its_linearity_slot_is_filled():
    with pytest.raises(ppinv.NoRuleError, match="user_mix"):
        ppinv.inverse(two_mixes, 1.0, 2.0)


def test_a_user_primitive_with_only_a_linearity_slot_joins_a_linear_block():
    with ppinv.overlay() as layer:
        rules.deflinear(MIX, operands=(0, 1), table=layer)
        inv = ppinv.inverse(two_mixes, 1.0, 2.0)
        report = check_inverse(two_mixes, 1.0, 2.0, inv=inv, **TOL)
    assert report.ok, report.failures
    assert "joint linear solve" in inv.describe(), inv.describe()
    # the square block's solution against the 2×2 system solved by hand
    a, b = 0.7, -1.3
    y = two_mixes(a, b)
    rhs = np.array([float(y[0]) + math.sin(3.0), float(y[1])])
    np.testing.assert_allclose(inv(y), np.linalg.solve([[3.0, 1.0], [1.0, -2.0]], rhs), rtol=1e-12)


def test_a_linear_user_primitive_among_rearrangements_of_vectors():
    with ppinv.overlay() as layer:
        rules.deflinear(MIX, operands=(0, 1), table=layer)
        a, b = jnp.arange(3.0), jnp.ones(3)
        inv = ppinv.inverse(mixes_of_vectors, a, b)
        assert "joint linear solve" in inv.describe(), inv.describe()
        report = check_inverse(mixes_of_vectors, a, b, inv=inv, **TOL)
    assert report.ok, report.failures


def test_the_linearity_slot_says_which_operands_given_which_are_known():
    jaxpr = ppinv._ir.import_jaxpr(jax.make_jaxpr(lambda a, b, w: mix(a, b, w))(1.0, 2.0, 3.0))
    (eqn,) = [e for e in jaxpr.eqns if e.prim is MIX]
    with ppinv.overlay() as layer:
        rules.deflinear(MIX, operands=(0, 1), table=layer)
        assert is_linear(eqn, [False, False, True])
        assert is_linear(eqn, [False, True, True])
        assert not is_linear(eqn, [False, True, False])  # w unknown: w·a is not affine
    assert not is_linear(eqn, [False, False, True])  # the slot left with the layer


def test_a_user_primitive_with_only_a_monotone_slot_joins_a_monotone_solve():
    with pytest.raises(ppinv.UnderdeterminedError, match="cannot reorient"):
        ppinv.inverse(x_plus_cubic, 1.0)  # x + cubic(x) uses x twice: no rule solves it
    with ppinv.overlay() as layer:
        rules.defmonotone(CUBIC, lambda t: t**3 + t, table=layer)
        inv = ppinv.inverse(x_plus_cubic, 1.0)
        report = check_inverse(x_plus_cubic, 1.0, inv=inv, **TOL)
    assert report.ok, report.failures
    assert "strictly increasing" in inv.describe(), inv.describe()
    # x³ + 2x = 3 has the one real root x = 1
    np.testing.assert_allclose(inv(3.0)[0], 1.0, rtol=1e-12)


def test_a_decreasing_user_primitive_with_derivative_bounds():
    with ppinv.overlay() as layer:
        rules.defmonotone(CUBIC, lambda t: -(t**3 + t), decreasing=True,
                          derivative=lambda lo, hi: (-math.inf, -1.0), table=layer)
        jaxpr = ppinv._ir.import_jaxpr(jax.make_jaxpr(cubic)(1.0))
        (eqn,) = jaxpr.eqns
        leaf = eqn.ins[0]
        # the slot is what the interval proof reads (here deliberately the negated map)
        assert derivative_sign([eqn], leaf, None, lambda v: None) == -1
    assert derivative_sign([eqn], leaf, None, lambda v: None) == 0  # no slot: cannot be shown


def test_slots_are_layered_innermost_first():
    outer = ppinv.rules.current_table()
    assert outer.slot("linearity", lax.add_p) is not None  # a default
    assert outer.slot("monotone", lax.exp_p) is not None
    assert outer.slot("linearity", MIX) is None
    with ppinv.overlay() as layer:
        mine = rules.deflinear(MIX, table=layer)
        with ppinv.overlay() as inner:
            assert inner.slot("linearity", MIX) is mine  # found in the layer below
            narrower = rules.deflinear(MIX, operands=(0,), table=inner)
            assert ppinv.rules.current_table().slot("linearity", MIX) is narrower
        assert ppinv.rules.current_table().slot("linearity", MIX) is mine
    assert ppinv.rules.current_table().slot("linearity", MIX) is None
    with pytest.raises(ValueError, match="unknown slot"):
        outer.slot("linearty", MIX)


def test_an_inverse_built_inside_an_overlay_keeps_its_slots_after_the_block():
    with ppinv.overlay() as layer:
        rules.deflinear(MIX, operands=(0, 1), table=layer)
        inv = ppinv.inverse(two_mixes, 1.0, 2.0)
    a, b = inv(two_mixes(0.25, 0.5))
    np.testing.assert_allclose([a, b], [0.25, 0.5], rtol=1e-12)
    with pytest.raises(ppinv.NoRuleError, match="user_mix"):
        ppinv.inverse(two_mixes, 1.0, 2.0)


def test_a_global_slot_stays_until_it_is_emptied():
    rules.defmonotone(CUBIC, lambda t: t**3 + t)
    try:
        assert ppinv.rules.current_table().slot("monotone", CUBIC) is not None
        np.testing.assert_allclose(ppinv.inverse(x_plus_cubic, 1.0)(3.0)[0], 1.0, rtol=1e-12)
    finally:
        rules.undefine_slot("monotone", CUBIC)
    assert ppinv.rules.current_table().slot("monotone", CUBIC) is None


def test_an_overlay_of_a_table_brings_its_slots():
    mine = rules.RuleTable(name="mine")
    jet = rules.defmonotone(CUBIC, lambda t: t**3 + t, table=mine)
    with ppinv.overlay(mine):
        assert ppinv.rules.current_table().slot("monotone", CUBIC) is jet
    assert ppinv.rules.current_table().slot("monotone", CUBIC) is None
    with pytest.raises(TypeError, match="exactly one"):
        rules.defmonotone(CUBIC, lambda t: t, bounds=lambda a, params: None, table=mine)


# hill(s, k) = s² / (k + s²): a Hill curve of coefficient 2, a ratio of polynomials in s
HILL = _elementwise_primitive(
    "user_hill",
    lambda s, k: s**2 / (k + s**2),
    lambda p, t: (2 * p[0] * p[1] * t[0] - p[0] ** 2 * t[1]) / (p[1] + p[0] ** 2) ** 2,
)


def _hill_degree(eqn, d):
    (ps, qs), (pk, qk) = d
    if qs or pk or qk:  # rational in s with k known only
        return None
    return 2 * ps, 2 * ps


def _hill_combine(eqn, args, one, magnitude, sign):
    from ppinv._poly import padd, pmul

    (s, _), (k, _) = args
    square = pmul(s, s)
    return square, padd(pmul(k, [one]), square)


def test_a_user_primitive_with_only_a_rational_slot_is_solved_in_closed_form():
    """s ↦ s²/(k + s²) on s > 0: with its rational slot the relation becomes the quadratic
    (1 − y)·s² − y·k = 0; a root θ picks one of its roots, and only the positive one is
    inside the support."""
    from numpyro.distributions import constraints

    f = lambda s: HILL.bind(s, 2.0)  # noqa: E731
    with pytest.raises(ppinv.errors.InversionError):
        ppinv.inverse(f, 1.0, support=[constraints.positive])
    with ppinv.overlay() as layer:
        rules.defrational(HILL, _hill_degree, _hill_combine, divisor=None, table=layer)
        inv = ppinv.inverse(f, 1.0, support=[constraints.positive])
        codes = [{n: jnp.asarray(c) for n in inv.theta_spec} for c in (0, 1)]
        inside = [c for c in codes if bool(inv.in_domain(0.3, c))]
        assert len(inside) == 1
        np.testing.assert_allclose(float(inv(0.3, inside[0])[0]), math.sqrt(0.3 * 2.0 / 0.7), rtol=1e-12)
        assert check_inverse(f, 1.0, support=[constraints.positive], inv=inv, **TOL).ok
    with ppinv.overlay() as layer:
        rules.defrational(HILL, _hill_degree, _hill_combine, table=layer)
        on_reals = ppinv.inverse(f, 1.0)  # both signs of s: a discrete θ picks the root
    roots = sorted(float(on_reals(0.3, {n: jnp.asarray(c) for n in on_reals.theta_spec})[0]) for c in (0, 1))
    np.testing.assert_allclose(roots, [-math.sqrt(0.6 / 0.7), math.sqrt(0.6 / 0.7)], rtol=1e-12)
