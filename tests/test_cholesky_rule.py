"""``jnp.linalg.cholesky(A)`` with ``A`` built from its unknowns and ``L``'s lower triangle observed:
``A = L·Lᵀ`` (``ppinv/joint/cholesky.py``); ``L`` observed whole is refused with the reason."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse, dense_log_abs_det

N = 3
ROWS, COLS = np.tril_indices(N)
A0 = jnp.asarray([2.0, 0.3, 1.5, -0.2, 0.1, 1.2])  # the lower triangle of an SPD matrix, by rows


def symmetric(a):
    """The symmetric matrix with lower triangle ``a`` (how a covariance is built from its free entries)."""
    t = jnp.zeros((N, N)).at[ROWS, COLS].set(a)
    return t + jnp.tril(t, -1).T


def factor_of(a):
    return jnp.linalg.cholesky(symmetric(a))[ROWS, COLS]


def _check(f, x):
    return check_inverse(f, x, points=[(x.at[1].set(-0.4),), (x * 1.1 + 0.05 * jnp.eye(N)[ROWS, COLS],)],
                         dense_points=1, rtol=1e-9, log_det_atol=1e-8)


def _dense_cholesky_log_det(lower):
    """slogdet of ∂(L·Lᵀ)_lower / ∂L_lower by jax.jacfwd: the map on lower triangles."""
    def square(l):
        m = jnp.zeros((N, N)).at[ROWS, COLS].set(l)
        return (m @ m.T)[ROWS, COLS]

    return float(jnp.linalg.slogdet(jax.jacfwd(square)(lower))[1])


def test_log_det_formula_against_the_dense_jacobian_on_lower_triangles():
    lower = factor_of(A0)
    diag = np.asarray(jnp.linalg.cholesky(symmetric(A0))).diagonal()
    formula = N * np.log(2.0) + sum((N - i) * np.log(diag[i]) for i in range(N))  # (n − i + 1), i from 1
    assert np.isclose(formula, _dense_cholesky_log_det(lower), atol=1e-12)
    inv = ppinv.inverse(factor_of, A0)
    assert inv.theta_spec == {}
    # a = tril(L·Lᵀ): the whole inverse's log|det| is the factor's map alone
    assert np.isclose(float(inv.log_abs_det_jacobian(lower)), formula, atol=1e-12)
    assert np.isclose(float(dense_log_abs_det(inv, lower, {})), formula, atol=1e-10)


def test_free_entries_from_the_observed_factor():
    inv = ppinv.inverse(factor_of, A0)
    (a,) = inv(factor_of(A0))
    np.testing.assert_allclose(a, A0, rtol=1e-12)
    _check(factor_of, A0)


def test_half_sum_and_a_known_matrix_added():
    known = jnp.asarray([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 0.3]])

    def f(a):  # (T + Tᵀ)/2 has off-diagonal a/2: another affine structure, M ≠ I
        t = jnp.zeros((N, N)).at[ROWS, COLS].set(a)
        return jnp.linalg.cholesky(known + (t + t.T) / 2)[ROWS, COLS]

    _check(f, A0)


def test_separate_variances_and_covariances():
    def f(variances, covariances):  # two unknown vectors, one matrix
        a = jnp.diag(variances) + jnp.zeros((N, N)).at[np.tril_indices(N, -1)].set(covariances)
        return jnp.linalg.cholesky(a)[ROWS, COLS]

    v, c = jnp.asarray([2.0, 1.5, 1.2]), jnp.asarray([0.3, -0.2, 0.1])
    inv = ppinv.inverse(f, v, c)
    back = inv(f(v, c))
    np.testing.assert_allclose(back[0], v, rtol=1e-12)
    np.testing.assert_allclose(back[1], c, rtol=1e-12, atol=1e-14)
    check_inverse(f, v, c, points=[(v, c), (v * 1.2, c * 0.5)], dense_points=1, rtol=1e-9, log_det_atol=1e-8)


def test_a_negative_diagonal_is_outside_the_domain():
    inv = ppinv.inverse(factor_of, A0)
    y = factor_of(A0).at[0].set(-1.0)
    assert not bool(inv.in_domain(y))
    assert float(inv.log_abs_det_jacobian(y)) == -np.inf


def test_factor_observed_whole_is_refused_with_the_reason():
    with pytest.raises(InversionError, match=r"(?s)jnp\.linalg\.cholesky.*symmetric part"):
        ppinv.inverse(jnp.linalg.cholesky, jnp.eye(N))


def test_an_unknown_matrix_takes_its_antisymmetric_part_as_theta():
    # 9 unknowns behind 6 observed entries: cholesky reads (A + Aᵀ)/2, so A = L·Lᵀ + K, K antisymmetric
    f = lambda a: jnp.linalg.cholesky(a)[ROWS, COLS]  # noqa: E731
    inv = ppinv.inverse(f, jnp.eye(N))
    (spec,) = inv.theta_spec.values()
    assert inv.n_theta == N * (N - 1) // 2 and spec.shape == (3,)
    a = symmetric(A0) + jnp.asarray([[0.0, 0.4, -0.1], [-0.4, 0.0, 0.3], [0.1, -0.3, 0.0]])
    np.testing.assert_allclose(inv(f(a), inv.pgf(a))[0], a, rtol=1e-12)
    check_inverse(f, jnp.eye(N), points=[(a,), (a * 1.1 + 0.3 * jnp.eye(N),)], dense_points=1, rtol=1e-9,
                  log_det_atol=1e-8)


def test_too_many_unknowns_behind_a_structured_matrix_are_refused_by_name():
    def f(a, b):  # 6 + 3 unknowns behind 6 observed entries, not a bare matrix
        return jnp.linalg.cholesky(symmetric(a) + jnp.diag(b))[ROWS, COLS]

    with pytest.raises(InversionError, match=r"(?s)cholesky.*affine function of 9 unknown entries"):
        ppinv.inverse(f, A0, jnp.ones(N))


def test_a_kernel_matrix_with_fewer_unknowns_is_over_determined():
    base = jnp.asarray([[1.0, 0.5, 0.2], [0.5, 1.0, 0.5], [0.2, 0.5, 1.0]])
    f = lambda amp, noise: jnp.linalg.cholesky(amp * base + noise * jnp.eye(N))[ROWS, COLS]  # noqa: E731
    with pytest.raises(InversionError, match="over-determined"):
        ppinv.inverse(f, 1.0, 0.1)


def test_a_function_named_cholesky_is_solved_through_its_body():
    @jax.jit
    def cholesky(x):  # not jnp.linalg.cholesky
        return 2.0 * x + 1.0

    check_inverse(lambda x: cholesky(x), jnp.ones(3), n_points=2, rtol=1e-10, log_det_atol=1e-9)


def test_antisymmetric_part_posterior_of_gaussian_entries():
    # A with iid N(0, 1) entries, tril(cholesky(A)) observed: A = S + K, and each pair S_ij ± K_ij
    # gives p(K_ij | y) ∝ exp(−K_ij²): a Gaussian of variance 1/2, centred at 0
    from scipy import integrate

    f = lambda a: jnp.linalg.cholesky(a)[ROWS, COLS]  # noqa: E731
    inv = ppinv.inverse(f, jnp.eye(N))
    (name,) = inv.theta_spec
    y = factor_of(A0)

    @jax.jit
    def log_density(k):
        theta = {name: jnp.asarray([k, 0.0, 0.0])}
        (a,) = inv(y, theta)
        return jnp.sum(jax.scipy.stats.norm.logpdf(a)) + inv.log_abs_det_jacobian(y, theta)

    dens = lambda k: float(jnp.exp(log_density(k)))  # noqa: E731
    norm = integrate.quad(dens, -10, 10)[0]
    mean = integrate.quad(lambda k: k * dens(k), -10, 10)[0] / norm
    var = integrate.quad(lambda k: (k - mean) ** 2 * dens(k), -10, 10)[0] / norm
    assert abs(mean) < 1e-9 and np.isclose(var, 0.5, atol=1e-9)


def test_a_singular_structure_is_refused():
    def f(a):  # the first two unknowns enter only through their sum
        t = jnp.zeros((N, N)).at[ROWS, COLS].set(a.at[0].add(a[1]).at[1].set(0.0))
        return jnp.linalg.cholesky(t + jnp.tril(t, -1).T)[ROWS, COLS]

    with pytest.raises(InversionError):
        ppinv.inverse(f, A0)
