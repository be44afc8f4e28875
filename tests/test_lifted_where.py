"""A ``where`` inside the function of one unknown, and ``|u|`` in monotone solves.

``G(x, where(p(x), c₀(x), c₁(x)))`` is ``where(p(x), G(x, c₀(x)), G(x, c₁(x)))``: ppinv lifts the
where to the observation and inverts each case (TFP's shifted Gompertz CDF, whose ``log1mexp``
picks a numerically stable formula by a where). ``|u|`` has interval bounds where ``u`` has one
sign; across 0 it has none, so a function with a flat piece is never passed as monotone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse, dense_log_abs_det

RATE, CONC = 1.2, 0.5


def log1mexp(x):  # tensorflow_probability/python/math/generic.py
    x = jnp.abs(x)
    return jnp.where(x < np.log(2.0), jnp.log(-jnp.expm1(-x)), jnp.log1p(-jnp.exp(-x)))


def shifted_gompertz_cdf(x):
    return jnp.exp(log1mexp(-RATE * x) - jnp.exp(-RATE * x) / CONC)


def test_where_inside_is_lifted_and_each_case_inverted():
    inv = ppinv.inverse(shifted_gompertz_cdf, 0.5, support=constraints.positive)
    assert inv.n_theta == 0
    run = jax.jit(lambda x: (inv.pgf(x), inv(shifted_gompertz_cdf(x), inv.pgf(x))[0]))
    for x0 in (0.1, 0.5, 3.0):  # both sides of the switch at RATE·x = log 2
        theta, x = run(jnp.asarray(x0))
        assert np.isclose(float(x), x0, rtol=1e-10)  # PGF round trip, hence soundness


@pytest.mark.slow
def test_lifted_where_domain_log_det_and_gradient():
    inv = ppinv.inverse(shifted_gompertz_cdf, 0.5, support=constraints.positive)
    y = shifted_gompertz_cdf(0.4)
    theta = inv.pgf(0.4)
    reached = [t for t in range(2) if bool(inv.in_domain(y, {k: jnp.asarray(t, v.dtype) for k, v in theta.items()}))]
    assert len(reached) == 1  # the predicate re-check leaves exactly one piece
    ld = inv.log_abs_det_jacobian(y, theta)
    assert np.isclose(float(ld), float(dense_log_abs_det(inv, y, theta)), atol=1e-9)
    grad = jax.grad(lambda y: inv(y, theta)[0])(y)
    assert np.isclose(float(grad), 1.0 / float(jax.grad(shifted_gompertz_cdf)(0.4)), rtol=1e-8)


@pytest.mark.slow
def test_shifted_gompertz_checked_in_full():
    check_inverse(shifted_gompertz_cdf, 0.5, support=constraints.positive, n_points=4, rtol=1e-8)


def test_lifted_case_that_is_not_one_to_one_is_refused():
    f = lambda x: jnp.sin(jnp.where(x > 0.0, x, 2.0 * x)) + 0.1 * x  # noqa: E731
    with pytest.raises(InversionError):
        ppinv.inverse(f, 0.5)


def test_abs_of_one_sign_is_monotone():
    f = lambda x: jnp.exp(jnp.abs(x)) + x  # noqa: E731
    inv = ppinv.inverse(f, 0.5, support=constraints.positive)
    (x,) = inv(f(1.3))
    assert np.isclose(float(x), 1.3, rtol=1e-12)


def test_abs_across_zero_proves_nothing():
    with pytest.raises(InversionError):  # e^|x| + x falls, then rises: two preimages
        ppinv.inverse(lambda x: jnp.exp(jnp.abs(x)) + x, 0.5)
    with pytest.raises(InversionError):  # x − |x| is flat on x > 0
        ppinv.inverse(lambda x: jnp.sinh(x - jnp.abs(x)), 0.5)
