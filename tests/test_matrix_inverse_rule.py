"""``jnp.linalg.inv`` of an unknown matrix: ``a = z⁻¹``, ``log|det ∂a/∂z| = −2n·log|det z|``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppinv
from ppinv.testing import check_inverse, dense_log_abs_det

A = jnp.asarray([[2.0, 0.3, -0.2], [0.1, 1.5, 0.4], [0.0, -0.7, 1.1]])


def test_inverse_of_inv_is_inv():
    inv = ppinv.inverse(jnp.linalg.inv, A)
    assert inv.n_theta == 0
    y = jnp.linalg.inv(A)
    (a,) = inv(y)
    np.testing.assert_allclose(a, A, rtol=1e-12, atol=1e-14)  # PGF round trip (no θ)
    np.testing.assert_allclose(jnp.linalg.inv(a), y, rtol=1e-12)  # soundness
    ld = float(inv.log_abs_det_jacobian(y))
    dense = float(dense_log_abs_det(inv, y, inv.pgf(A)))
    sign, logdet = np.linalg.slogdet(np.asarray(y))
    assert np.isclose(ld, dense, atol=1e-10) and np.isclose(ld, -6.0 * logdet, atol=1e-10)


def test_inverse_gradient_matches_finite_differences():
    inv = ppinv.inverse(jnp.linalg.inv, A)
    y = jnp.linalg.inv(A)
    w = jnp.arange(9.0).reshape(3, 3) / 10

    def scalar(y):
        return jnp.sum(w * inv(y)[0]) + inv.log_abs_det_jacobian(y)

    grad = jax.grad(scalar)(y)
    h = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        e = jnp.zeros((3, 3)).at[i, j].set(h)
        central = (scalar(y + e) - scalar(y - e)) / (2 * h)
        assert np.isclose(float(grad[i, j]), float(central), rtol=1e-6)


def test_batched_matrices_checked_in_full():
    stack = jnp.stack([A, A.T + jnp.eye(3)])
    check_inverse(jnp.linalg.inv, stack, points=[(stack,)], rtol=1e-9)


def test_inverse_inside_a_program():
    f = lambda a: jnp.linalg.inv(jnp.exp(a))  # noqa: E731
    check_inverse(f, A, points=[(A,), (0.5 * A,)], rtol=1e-9)


def test_singular_observation_is_outside_the_domain():
    inv = ppinv.inverse(jnp.linalg.inv, A)
    singular = jnp.asarray([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]])
    assert not bool(inv.in_domain(singular))
    assert np.isneginf(float(jax.jit(inv.log_abs_det_jacobian)(singular)))


def test_a_user_function_called_inv_is_solved_through_its_body():
    @jax.jit
    def inv(x):  # shares jnp.linalg.inv's name only
        return 2.0 * x + 1.0

    p = ppinv.inverse(lambda x: inv(x), 0.3)
    (x,) = p(jnp.asarray(2.0))
    assert np.isclose(float(x), 0.5)
    assert np.isclose(float(p.log_abs_det_jacobian(jnp.asarray(2.0))), -np.log(2.0))


def test_inv_of_a_rectangular_matrix_is_not_claimed():
    with pytest.raises(Exception):
        ppinv.inverse(jnp.linalg.inv, jnp.ones((2, 3)))
