"""Linear solves with a known matrix, as users write them (``rules/linear.py``).

``x = A⁻¹ b`` with ``A`` known is solved for ``b`` by running the known linear map forward
(``b = A x``: the matvec jaxpr of ``custom_linear_solve``, the triangle of ``triangular_solve``),
with ``log|det A|`` per right-hand side as its density term. The programs are what
``jnp.linalg.solve``, ``jax.scipy.linalg.solve``/``solve_triangular``/``cho_solve`` and
``lax.linalg.triangular_solve`` emit, with the matrix a jnp constant, a NumPy constant, or a
value closed over from an enclosing ``jit`` (known only at run time). Each inverse is checked by
:func:`ppinv.testing.check_inverse` (soundness, PGF round trip, log|det| against the dense
Jacobian, derivatives against central differences); the linearity slots are checked by solves
that join a joint linear block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from jax import lax

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse

A = jnp.asarray([[0.9, 0.2, 0.1], [0.3, 0.8, -0.2], [0.1, 0.4, 0.7]])
A_NP = np.asarray(A)
L = np.asarray([[2.0, 0.0, 0.0], [0.5, 1.5, 0.0], [-0.3, 0.2, 0.8]])
SPD = L @ L.T
B3 = jnp.asarray([0.3, -0.5, 1.2])
B32 = jnp.asarray([[0.3, -0.5], [1.2, 0.1], [-0.7, 0.4]])


def _exact(f, *args, n_points=2):
    inv = ppinv.inverse(f, *args)
    report = check_inverse(f, *args, inv=inv, n_points=n_points, rtol=1e-8, log_det_atol=1e-8, dense_points=1,
                           grad_points=1)
    assert report.n_in_domain > 0
    return inv


def _steps(inv):
    return "\n".join(s.describe() for s in inv.schedule.steps)


def _log_det(inv, x):
    y = inv.forward(*x)
    return float(inv.with_log_det(y, inv.pgf(*x))[1])


def _dense(f, x):
    """log|det ∂x/∂y| of a square bijection ``f``: −log|det ∂f/∂x|."""
    flat = jnp.concatenate([jnp.ravel(v) for v in x])
    sizes = np.cumsum([0] + [v.size for v in x])

    def g(u):
        parts = [u[a:b].reshape(v.shape) for a, b, v in zip(sizes[:-1], sizes[1:], x)]
        out = f(*parts)
        out = out if isinstance(out, tuple) else (out,)
        return jnp.concatenate([jnp.ravel(o) for o in out])

    return -float(np.linalg.slogdet(np.asarray(jax.jacfwd(g)(flat)))[1])


# --- custom_linear_solve (jnp.linalg.solve and friends) ------------------------------------------
PROGRAMS = {
    "solve_vector": (lambda b: jnp.linalg.solve(A, b), (B3,)),
    "solve_matrix_numpy_constant": (lambda b: jnp.linalg.solve(A_NP, b), (B32,)),
    "scipy_solve": (lambda b: jsl.solve(A, b), (B3,)),
    "scipy_solve_positive_definite": (lambda b: jsl.solve(SPD, b, assume_a="pos"), (B32,)),
    "right_divide": (lambda b: jnp.linalg.solve(A.T, b.T).T, (B32.T,)),
    "cho_solve": (lambda b: jsl.cho_solve((L, True), b), (B3,)),
    "solve_triangular_lower": (lambda b: jsl.solve_triangular(L, b, lower=True), (B3,)),
    "solve_triangular_upper_transposed": (lambda b: jsl.solve_triangular(L.T, b, lower=False, trans=1), (B32,)),
    "solve_triangular_unit_diagonal": (lambda b: jsl.solve_triangular(L, b, lower=True, unit_diagonal=True), (B3,)),
    "triangular_solve_right_side": (
        lambda b: lax.linalg.triangular_solve(L, b, left_side=False, lower=True, transpose_a=True), (B32.T,)),
    "solve_then_nonlinear": (lambda b: jnp.exp(jnp.linalg.solve(A, jnp.tanh(b))), (B3,)),
}


# the default tier checks one of each kind (a custom_linear_solve with a NumPy matrix, triangular solves
# left and right, a solve between nonlinear maps); the rest run with ``-m slow``
DEFAULT_TIER = {"solve_matrix_numpy_constant", "solve_triangular_lower", "triangular_solve_right_side",
                "solve_then_nonlinear"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in DEFAULT_TIER else [pytest.mark.slow])
                                  for n in PROGRAMS])
def test_a_solve_with_a_known_matrix_is_inverted_exactly(name):
    f, args = PROGRAMS[name]
    inv = _exact(f, *args)
    assert inv.n_theta == 0
    assert "undo a" in _steps(inv)
    np.testing.assert_allclose(_log_det(inv, args), _dense(f, args), rtol=1e-9, atol=1e-9)


def test_the_triangle_a_triangular_solve_reads_is_the_matrix():
    """The other triangle (and a unit diagonal) are ignored by triangular_solve: b = tril(A) x."""
    full = jnp.asarray(A_NP + 5.0)  # nonzero above the diagonal

    def f(b):
        return jsl.solve_triangular(full, b, lower=True, unit_diagonal=True)

    inv = _exact(f, B3)
    x = f(B3)
    np.testing.assert_allclose(inv(x, {})[0], B3, rtol=1e-12)
    assert abs(_log_det(inv, (B3,))) < 1e-12  # unit diagonal: det = 1


def test_a_solve_under_jit_and_vmap():
    f, (b,) = PROGRAMS["solve_vector"]
    inv = ppinv.inverse(f, b)
    ys = jax.vmap(f)(jnp.stack([b, 2 * b, -b]))
    xs = jax.jit(jax.vmap(lambda y: inv(y, {})[0]))(ys)
    np.testing.assert_allclose(xs, jnp.stack([b, 2 * b, -b]), rtol=1e-12)


def test_a_matrix_known_only_at_run_time():
    """A closed over from an enclosing jit is a tracer when the inverse is built: b = A x and
    log|det A| are computed per call, and differentiate in A as the dense value does."""

    def density(a, y):
        inv = ppinv.inverse(lambda b: jnp.linalg.solve(a, b), B3)
        (x,), ld = inv.with_log_det(y, {})
        return x, ld

    y = jnp.linalg.solve(A, B3)
    x, ld = jax.jit(density)(A, y)
    np.testing.assert_allclose(x, B3, rtol=1e-12)
    np.testing.assert_allclose(ld, np.linalg.slogdet(A_NP)[1], rtol=1e-12)
    grad = jax.grad(lambda a: density(a, y)[1])(A)
    np.testing.assert_allclose(grad, np.linalg.inv(A_NP).T, rtol=1e-9)  # ∂ log|det A| / ∂A = A⁻ᵀ


def test_a_triangular_matrix_known_only_at_run_time():
    def solved(lo, y):
        inv = ppinv.inverse(lambda b: jsl.solve_triangular(lo, b, lower=True), B3)
        (x,), ld = inv.with_log_det(y, {})
        return x, ld, inv.in_domain(y, {})

    y = jsl.solve_triangular(L, B3, lower=True)
    x, ld, ok = jax.jit(solved)(jnp.asarray(L), y)
    np.testing.assert_allclose(x, B3, rtol=1e-12)
    np.testing.assert_allclose(ld, np.sum(np.log(np.abs(np.diag(L)))), rtol=1e-12)
    assert bool(ok)
    _, ld, ok = jax.jit(solved)(jnp.asarray(L * np.asarray([1.0, 0.0, 1.0])[:, None]), y)  # a zero pivot
    assert not bool(ok) and ld == -jnp.inf


# --- linearity slots: solves join joint linear blocks ---------------------------------------------
def solve_plus_shift(b, c):
    return jnp.linalg.solve(A, b) + c, b - c


def triangular_of_a_sum(b, c):
    return jsl.solve_triangular(L, b + c, lower=True), b - 2.0 * c


@pytest.mark.parametrize("f", [solve_plus_shift, triangular_of_a_sum])
def test_solves_join_linear_blocks(f):
    inv = _exact(f, B3, 2 * B3)
    assert inv.n_theta == 0
    assert "joint linear solve" in _steps(inv)


# --- refusals --------------------------------------------------------------------------------------
def test_a_singular_known_matrix_is_refused():
    singular = L * np.asarray([1.0, 0.0, 1.0])[:, None]  # a zero on the diagonal
    with pytest.raises(InversionError, match="triangular_solve with a known singular matrix"):
        ppinv.inverse(lambda b: jsl.solve_triangular(singular, b, lower=True), B3)


def test_a_solve_for_its_matrix_is_refused_with_a_reason():
    with pytest.raises(InversionError, match="custom_linear_solve"):
        ppinv.inverse(lambda a: jnp.linalg.solve(a, B3), jnp.asarray(A))
