"""Real linear maps computed through complex values (TFP's DCT bijector: ``fft``, twiddle, ``real``).

ppinv folds such a region into one product with its (known) matrix when every relation in it is
linear in the region's values and only real values leave it; the linear rules invert it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse, dense_log_abs_det


def dct(x):
    return jax.scipy.fft.dct(x, type=2, norm="ortho")


X = jnp.asarray([0.3, -1.2, 0.7, 2.0, -0.4])


def test_dct_inverse_is_the_idct():
    inv = ppinv.inverse(dct, X)
    assert inv.n_theta == 0
    y = dct(X)
    run = jax.jit(lambda y: (inv(y)[0], inv.log_abs_det_jacobian(y)))
    x, ld = run(y)
    np.testing.assert_allclose(x, X, atol=1e-12)  # PGF round trip (no θ)
    np.testing.assert_allclose(x, jax.scipy.fft.idct(y, type=2, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(dct(x), y, atol=1e-12)  # soundness
    assert abs(float(ld)) < 1e-10  # orthogonal: |det| = 1
    assert np.isclose(float(ld), float(dense_log_abs_det(inv, y, inv.pgf(X))), atol=1e-10)


def test_dct_gradient_matches_finite_differences():
    inv = ppinv.inverse(lambda x: dct(jnp.exp(x)), X)
    y = dct(jnp.exp(X))
    w = jnp.arange(1.0, 6.0)
    scalar = jax.jit(lambda y: jnp.sum(w * inv(y)[0]) + inv.log_abs_det_jacobian(y))
    grad = jax.jit(jax.grad(scalar))(y)
    h = 1e-6
    for i in range(5):
        e = jnp.zeros(5).at[i].set(h)
        assert np.isclose(float(grad[i]), float((scalar(y + e) - scalar(y - e)) / (2 * h)), rtol=1e-6)


@pytest.mark.slow
def test_dct_checked_in_full():
    check_inverse(lambda x: dct(jnp.exp(x)), X, n_points=3, rtol=1e-9)


def test_real_part_of_fft_is_rank_deficient_and_refused():
    """``real(fft(x))`` of a real ``x`` is symmetric (X_k = X_{n−k}): its outputs are not free."""
    with pytest.raises(InversionError):
        ppinv.inverse(lambda x: jnp.real(jnp.fft.fft(x)), jnp.ones(4))


def test_unknown_complex_factor_is_not_folded():
    """``real(fft(x)·e^{ia})`` with ``a`` unknown is not linear in the pair: no fold, refused."""
    f = lambda x, a: jnp.real(jnp.fft.fft(x) * jnp.exp(1j * a))  # noqa: E731
    with pytest.raises(InversionError):
        ppinv.inverse(f, jnp.ones(3), 0.2)
