"""Rational equations of degree 3 in one unknown: every real root reached by a discrete θ.

``E(x) = z·Q(x) − P(x)`` of degree 3 has one or three real roots; θ ∈ {0, 1, 2} picks one by
rank (0: the largest), a code beyond the real roots is outside the domain, so no root is ever
dropped. A cubic proven strictly monotone on the support (``x³ + x``) needs no θ.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from ppinv.testing import check_inverse, dense_log_abs_det

R_GAS = 0.08314  # L·bar/(K·mol)


def van_der_waals(V, n=1.0, a=1.37, b=0.0387, T=100.0):
    """Pressure of N₂ below its critical temperature: the isotherm loops (units: L, bar)."""
    return n * R_GAS * T / (V - n * b) - a * n**2 / V**2


def _thetas(inv):
    spec = inv.theta_spec
    names = list(spec)
    ranges = [range(int(spec[k].support.lower_bound), int(spec[k].support.upper_bound) + 1) for k in names]
    for values in itertools.product(*ranges):
        yield {k: jnp.asarray(v, spec[k].dtype) for k, v in zip(names, values)}


def _reached(inv, y):
    run = jax.jit(lambda y, t: (inv(y, t)[0], inv.in_domain(y, t)))
    return sorted(float(x) for x, ok in (run(y, t) for t in _thetas(inv)) if bool(ok))


def _true_roots(coeffs, lo=-np.inf):
    roots = np.roots(coeffs)
    return sorted(float(r.real) for r in roots if abs(r.imag) < 1e-9 and r.real > lo)


def test_van_der_waals_loop_reaches_all_three_volumes():
    inv = ppinv.inverse(van_der_waals, 0.2, support=constraints.greater_than(0.0387))
    assert inv.n_theta == 0 and len(inv.theta_spec) == 1  # one discrete leaf
    y = jnp.asarray(5.0)  # inside the loop: three volumes
    # P·V²(V − b) − RT·V² + a(V − b) = 0
    P, a, b, RT = 5.0, 1.37, 0.0387, R_GAS * 100.0
    truth = _true_roots([P, -(P * b + RT), a, -a * b], lo=b)
    assert len(truth) == 3
    np.testing.assert_allclose(_reached(inv, y), truth, rtol=1e-10)
    h = 1e-6

    @jax.jit
    def at(V):
        theta = inv.pgf(V)
        x = inv(y, theta)[0]
        central = (inv(y + h, theta)[0] - inv(y - h, theta)[0]) / (2 * h)
        return theta, x, inv.log_abs_det_jacobian(y, theta), jax.grad(lambda y: inv(y, theta)[0])(y), central

    for i, V in enumerate(truth):
        theta, x, ld, grad, central = at(V)
        dense = dense_log_abs_det(inv, y, theta) if i == 1 else ld  # the dense Jacobian once (slow)
        assert np.isclose(float(x), V, rtol=1e-10)  # PGF round trip
        assert np.isclose(float(van_der_waals(x)), 5.0, rtol=1e-10)  # soundness
        assert np.isclose(float(ld), float(dense), atol=1e-8)
        assert np.isclose(float(grad), float(central), rtol=1e-5)
        assert np.isclose(float(grad), 1.0 / float(jax.grad(van_der_waals)(x)), rtol=1e-9)  # 1 / P′(V)


def test_van_der_waals_one_volume_above_the_loop():
    inv = ppinv.inverse(van_der_waals, 0.2, support=constraints.greater_than(0.0387))
    y = jnp.asarray(60.0)  # compressed liquid: one volume
    P, a, b, RT = 60.0, 1.37, 0.0387, R_GAS * 100.0
    truth = _true_roots([P, -(P * b + RT), a, -a * b], lo=b)
    assert len(truth) == 1
    np.testing.assert_allclose(_reached(inv, y), truth, rtol=1e-10)


@pytest.mark.slow
def test_van_der_waals_checked_in_full():
    check_inverse(van_der_waals, 0.2, support=constraints.greater_than(0.0387),
                  points=[(0.07,), (0.2,), (1.0,)], rtol=1e-8)


def test_cubic_with_three_real_roots_is_never_solved_for_one():
    f = lambda x: x**3 - 3.0 * x  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    for y in (0.5, -1.2, 1.9):
        np.testing.assert_allclose(_reached(inv, jnp.asarray(y)), _true_roots([1.0, 0.0, -3.0, -y]), rtol=1e-10)
    np.testing.assert_allclose(_reached(inv, jnp.asarray(3.0)), _true_roots([1.0, 0.0, -3.0, -3.0]), rtol=1e-10)


@pytest.mark.slow
def test_cubic_with_three_real_roots_checked_in_full():
    check_inverse(lambda x: x**3 - 3.0 * x, 0.5, points=[(-1.5,), (0.3,), (1.4,)], rtol=1e-9)


def test_monotone_cubic_needs_no_theta():
    f = lambda x: x**3 + x + 1.0  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    assert not inv.theta_spec
    run = jax.jit(lambda y: (inv(y)[0], jax.grad(lambda y: inv(y)[0])(y)))
    for y in (-4.0, 0.2, 9.0):
        x, grad = run(jnp.asarray(y))
        assert np.isclose(float(x), _true_roots([1.0, 0.0, 1.0, 1.0 - y])[0], rtol=1e-12)
        assert np.isclose(float(grad), 1.0 / (3.0 * float(x) ** 2 + 1.0), rtol=1e-10)


@pytest.mark.slow
def test_monotone_cubic_checked_in_full():
    check_inverse(lambda x: x**3 + x + 1.0, 0.5, n_points=3, rtol=1e-9)

