"""A case of a where that depends on the unknown only through steps (``sign``, ``floor``) is flat.

TFP's softsign is ``where(|x| ≥ 1e20, sign(x), x / (1 + |x|))``: on the first case the output is
±1 whatever ``x`` is, a flat piece of full dimension, exactly like a constant case (the ``0`` of
``relu``). It is declared a flat piece, never solved, and the other case is inverted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse, dense_log_abs_det


def softsign(x):
    abs_x = jnp.abs(x)
    return jnp.where(abs_x >= 1e20, jnp.sign(x), x / (1.0 + abs_x))


def test_softsign_inverts_on_its_moving_piece():
    inv = ppinv.inverse(softsign, 0.5)
    for y in (-0.9, -0.2, 0.0, 0.3, 0.97):
        (x,) = inv(jnp.asarray(y))
        assert np.isclose(float(x), y / (1.0 - abs(y)), rtol=1e-12)  # the closed form
        assert np.isclose(float(softsign(x)), y, rtol=1e-12, atol=1e-15)
        ld = float(inv.log_abs_det_jacobian(jnp.asarray(y)))
        assert np.isclose(ld, -2.0 * np.log1p(-abs(y)), rtol=1e-10, atol=1e-12)  # dx/dy = 1/(1 − |y|)²
        assert np.isclose(ld, float(dense_log_abs_det(inv, jnp.asarray(y), inv.pgf(x))), atol=1e-10)
    assert not bool(inv.in_domain(jnp.asarray(1.5)))  # outside the range (−1, 1)


def test_softsign_checked_in_full():
    check_inverse(softsign, 0.5, n_points=4, dense_points=2, grad_points=2, rtol=1e-9)


def test_floor_case_is_a_flat_piece():
    f = lambda x: jnp.where(x > 2.0, jnp.floor(x), jnp.exp(x))  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    (x,) = inv(jnp.asarray(1.5))
    assert np.isclose(float(x), np.log(1.5))
    assert np.isclose(float(jax.grad(lambda y: inv(y)[0])(1.5)), 1 / 1.5)


def test_flat_step_piece_fed_from_theta_is_evaluated_forward():
    """``softsign(a) + b``: solving ``a`` from a θ-dependent value would drop the flat piece,
    so ppinv frees ``a`` and solves ``b``."""
    f = lambda a, b: softsign(a) + b  # noqa: E731
    inv = ppinv.inverse(f, 0.5, 0.2)
    assert inv.n_theta == 1
    check_inverse(f, 0.5, 0.2, n_points=3, dense_points=1, grad_points=1, rtol=1e-9)


def test_every_case_a_step_is_refused():
    with pytest.raises(InversionError, match="constant"):
        ppinv.inverse(lambda x: jnp.where(x > 0.0, jnp.sign(x), jnp.floor(x)), 0.5)


def test_sign_alone_is_refused():
    with pytest.raises(InversionError, match="sign"):
        ppinv.inverse(jnp.sign, 0.5)
