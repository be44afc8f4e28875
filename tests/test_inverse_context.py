"""Known inputs of an inverse (``context=``): read at every call, never baked in.

A regression's covariates, a rate constant, a design matrix: ``f(*x, **context)``
is inverted in ``x`` alone, and new context values of the same shapes need no new
trace. Checked: soundness and the PGF round trip at context values other than the
build's, log|det| against the dense Jacobian there, gradients with respect to the
context against central differences, one trace for many values under ``jit``,
``with_free``, and the errors for context of the wrong kind.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from ppinv.testing import check_inverse


def regression(w, *, X, offset):
    """Two observed means of a 3-coefficient regression with known covariates and offset."""
    return X @ w + offset


X0 = jnp.array([[1.0, 0.5, -0.3], [0.2, 1.5, 0.7]])
X1 = jnp.array([[0.4, -1.2, 2.0], [1.1, 0.3, -0.6]])
OFFSET0, OFFSET1 = jnp.array([0.1, -0.2]), jnp.array([1.0, 0.5])


@pytest.fixture(scope="module")
def inv():
    return ppinv.inverse(regression, jnp.zeros(3), context={"X": X0, "offset": OFFSET0})


def test_checks_at_the_build_context(inv):
    report = check_inverse(regression, jnp.zeros(3), context={"X": X0, "offset": OFFSET0}, inv=inv, n_points=5)
    assert report.ok, report


def _dense_log_det(inv, y, theta, context):
    (name,) = inv.theta_spec
    flat = lambda z: inv(z[:2], {name: z[2:]}, context=context)[0]  # noqa: E731
    jac = jax.jacfwd(flat)(jnp.concatenate([y, theta[name]]))
    return np.linalg.slogdet(np.asarray(jac))[1]


def test_soundness_pgf_and_log_det_at_other_context_values(inv):
    ctx = {"X": X1, "offset": OFFSET1}
    y = jnp.array([0.7, -1.3])
    for t in (-1.0, 0.3, 2.5):
        theta = {n: jnp.full(s.shape, t) for n, s in inv.theta_spec.items()}
        (w,) = inv(y, theta, context=ctx)
        np.testing.assert_allclose(regression(w, **ctx), y, atol=1e-12)
        back = inv.pgf(w, context=ctx)
        np.testing.assert_allclose(inv(regression(w, **ctx), back, context=ctx)[0], w, atol=1e-12)
        np.testing.assert_allclose(inv.log_abs_det_jacobian(y, theta, context=ctx),
                                   _dense_log_det(inv, y, theta, ctx), atol=1e-10)
    # the default context is the build's
    theta = {n: jnp.zeros(s.shape) for n, s in inv.theta_spec.items()}
    np.testing.assert_allclose(regression(inv(y, theta)[0], X=X0, offset=OFFSET0), y, atol=1e-12)


def test_gradient_with_respect_to_the_context_matches_finite_differences(inv):
    y = jnp.array([0.7, -1.3])
    theta = {n: jnp.full(s.shape, 0.4) for n, s in inv.theta_spec.items()}

    def first_coefficient(X):
        return inv(y, theta, context={"X": X, "offset": OFFSET1})[0][0]

    grad = np.asarray(jax.grad(first_coefficient)(X1))
    h = 1e-6
    fd = np.zeros_like(grad)
    for i in range(X1.shape[0]):
        for j in range(X1.shape[1]):
            e = jnp.zeros_like(X1).at[i, j].set(h)
            fd[i, j] = (first_coefficient(X1 + e) - first_coefficient(X1 - e)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_context_is_read_at_every_call_under_jit():
    rate = ppinv.inverse(lambda c, *, k: jnp.exp(-k) * c, 1.0, context={"k": 0.5}, support=[constraints.positive])
    solve = jax.jit(lambda y, k: rate(y, context={"k": k})[0])
    for k in (0.1, 0.5, 2.0):
        np.testing.assert_allclose(solve(0.3, k), 0.3 * np.exp(k), rtol=1e-14)
    assert rate.trace_count == 1
    batched = jax.vmap(lambda k: rate(0.3, context={"k": k})[0])(jnp.array([0.1, 2.0]))
    np.testing.assert_allclose(batched, 0.3 * np.exp([0.1, 2.0]), rtol=1e-14)


def test_with_free_reschedules_without_tracing_again():
    inv = ppinv.inverse(lambda a, b, *, s: s * a * b, 1.0, 1.0, context={"s": 2.0})
    for free in (["a"], ["b"]):
        other = inv.with_free(free)
        assert list(other.theta_spec) == free
        a, b = other(3.0, {free[0]: jnp.asarray(0.7)}, context={"s": 0.5})
        np.testing.assert_allclose(0.5 * a * b, 3.0, rtol=1e-13)
        assert other.program is inv.program
    with pytest.raises(ppinv.InputError, match="not an argument"):
        inv.with_free(["c"])


def test_context_errors_say_what_was_wrong(inv):
    y = jnp.array([0.7, -1.3])
    theta = {n: jnp.zeros(s.shape) for n, s in inv.theta_spec.items()}
    with pytest.raises(ppinv.InputError, match=r"context\['X'\] has shape \(3, 3\)"):
        inv(y, theta, context={"X": jnp.ones((3, 3)), "offset": OFFSET0})
    with pytest.raises(ppinv.InputError, match="pass the same keys"):
        inv(y, theta, context={"X": X1})
    with pytest.raises(ppinv.InputError, match="must be a dict"):
        ppinv.inverse(regression, jnp.zeros(3), context=[X0, OFFSET0])
    with pytest.raises(ppinv.InputError, match="Close over other values"):
        ppinv.inverse(lambda w, *, how: w, 1.0, context={"how": "linear"})
