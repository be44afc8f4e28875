"""``jnp.hypot(x, k)`` and ``√(x² + k²)`` with ``k`` known: ``x = ±√(z² − k²)`` on ``z > |k|``.

``jnp.hypot`` is a ``jit`` call whose body guards against overflow (``abs``, ``max``, ``min``,
a division), so ppinv keeps it as one relation; the written-out form goes through ``x**2``'s
rule. The sign is a θ unless ``x``'s support has one sign.
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

import ppinv
from ppinv.testing import check_inverse, dense_log_abs_det

K = jnp.asarray([0.5, 2.0, -1.5])


def _check(f, *args, support=None):
    return check_inverse(f, *args, support=support, n_points=4, dense_points=2, rtol=1e-9, log_det_atol=1e-8)


def test_hypot_left_operand_takes_a_sign_theta():
    f = lambda x: jnp.hypot(x, 2.0)  # noqa: E731
    inv = ppinv.inverse(f, 1.0)
    (spec,) = inv.theta_spec.values()
    assert spec.kind == "sign" and spec.discrete and inv.n_theta == 0
    _check(f, 1.0)
    # both preimages: x = ±√(z² − 4)
    for s, want in ((0, 1.5), (1, -1.5)):
        (x,) = inv(jnp.hypot(1.5, 2.0), {n: jnp.asarray(s) for n in inv.theta_spec})
        np.testing.assert_allclose(x, want, rtol=1e-12)


def test_hypot_of_a_positive_unknown_needs_no_theta():
    f = lambda x: jnp.hypot(x, K)  # noqa: E731
    inv = ppinv.inverse(f, jnp.ones(3), support=constraints.positive)
    assert inv.theta_spec == {}
    _check(f, jnp.ones(3), support=constraints.positive)


def test_hypot_of_a_negative_unknown_takes_the_negative_root():
    f = lambda x: jnp.hypot(x, 1.0)  # noqa: E731
    inv = ppinv.inverse(f, -1.0, support=constraints.less_than(0.0))
    assert inv.theta_spec == {}
    (x,) = inv(jnp.hypot(-0.75, 1.0))
    np.testing.assert_allclose(x, -0.75, rtol=1e-12)


def test_hypot_right_operand_with_a_broadcast_known_left():
    f = lambda x: jnp.hypot(K, x)  # noqa: E731
    _check(f, jnp.ones(3))


def test_hypot_log_det_is_log_z_over_x():
    f = lambda x: jnp.hypot(x, K)  # noqa: E731
    inv = ppinv.inverse(f, jnp.ones(3))
    x = jnp.asarray([0.3, -2.0, 4.0])
    y, theta = f(x), inv.pgf(x)
    want = float(jnp.sum(jnp.log(y) - jnp.log(jnp.abs(x))))  # dx/dz = z / x
    assert np.isclose(float(inv.log_abs_det_jacobian(y, theta)), want, atol=1e-12)
    assert np.isclose(float(dense_log_abs_det(inv, y, theta)), want, atol=1e-10)


def test_hypot_of_one_variable_twice():
    f = lambda x: jnp.hypot(x, x)  # noqa: E731
    _check(f, jnp.ones(2))


def test_written_out_hypot():
    f = lambda x: jnp.sqrt(x**2 + K**2)  # noqa: E731
    _check(f, jnp.ones(3))


def test_hypot_below_the_known_side_is_outside_the_domain():
    inv = ppinv.inverse(lambda x: jnp.hypot(x, 2.0), 1.0)
    theta = {n: jnp.asarray(0) for n in inv.theta_spec}
    assert not bool(inv.in_domain(1.5, theta))
    assert float(inv.log_abs_det_jacobian(1.5, theta)) == -np.inf  # −∞ density, never NaN
    # inside the domain, the gradient stays finite next to the wall z = |k|
    g = jax.jit(jax.grad(lambda y: inv.log_abs_det_jacobian(y, theta)))(2.0 + 1e-6)
    assert np.isfinite(float(g))


def test_a_function_named_hypot_is_solved_through_its_own_body():
    @jax.jit
    def hypot(a, b):
        return jnp.sqrt(a**2 + b**2) + 1.0  # not jnp.hypot: the rule must not take it for one

    f = lambda x: hypot(x, 2.0)  # noqa: E731
    _check(f, 1.0)


def test_hypot_of_two_unknowns_frees_one():
    f = lambda x, k: jnp.hypot(x, k)  # noqa: E731
    inv = ppinv.inverse(f, 1.0, 2.0)
    assert inv.n_theta == 1
    x, k = jnp.asarray(0.7), jnp.asarray(-1.3)
    back = inv(f(x, k), inv.pgf(x, k))
    np.testing.assert_allclose(back, (x, k), rtol=1e-12)


def test_written_out_hypot_of_a_positive_unknown_needs_no_theta():
    f = lambda x: jnp.sqrt(x**2 + K**2)  # noqa: E731
    inv = ppinv.inverse(f, jnp.ones(3), support=constraints.positive)
    assert inv.theta_spec == {}
    _check(f, jnp.ones(3), support=constraints.positive)


def test_one_signed_supports_fix_the_sign_of_every_two_branch_rule():
    negative = constraints.less_than(0.0)
    for fn in (jnp.square, jnp.abs, jnp.cosh, lambda x: x**4):
        for support, x in ((constraints.positive, 0.7), (negative, -0.7)):
            inv = ppinv.inverse(fn, 1.0, support=support)
            assert inv.theta_spec == {}, (fn, support)
            (back,) = inv(fn(x))
            np.testing.assert_allclose(back, x, rtol=1e-12)
    # an interval across 0 keeps the sign θ
    inv = ppinv.inverse(jnp.square, 0.5, support=constraints.interval(-1.0, 2.0))
    assert [s.kind for s in inv.theta_spec.values()] == ["sign"]
