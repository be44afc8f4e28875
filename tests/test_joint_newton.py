"""Square coupled blocks solved by Newton's method under a uniqueness certificate (``ppinv.joint.newton``).

The certificate (an interval enclosure of the Jacobian over the supports that is a P-matrix
after a row permutation, signs and column weights: Gale–Nikaido) is checked against sampled
Jacobians; the solves against the forward program (soundness, PGF round trip), the dense
log|det| and central finite differences (``ppinv.testing.check_inverse``); a block with two
roots is refused; an observation outside the image is flagged.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.infer.util import log_density

import ppinv
from ppinv.errors import DomainError, UnderdeterminedError
from ppinv.intervals import jacobian_enclosure
from ppinv.joint.newton import p_matrix_certificate
from ppinv.testing import check_inverse

UNIT = constraints.interval(0.0, 1.0)


def tanh_sin(x1, x2):  # |∂y₁/∂x₂| ≤ 0.3 and |∂y₂/∂x₁| ≤ 0.2 against unit diagonals: one root on ℝ²
    return x1 + 0.3 * jnp.tanh(x2), x2 + 0.2 * jnp.sin(x1)


def binding(a, b):  # free concentrations a, b of two species forming a complex a·b/K (K = 2)
    complex_ = 0.5 * a * b
    return a + complex_, b + complex_


def planar(z):  # a planar flow z + u·tanh(wᵀz + b) with wᵀu > −1
    w, u = jnp.array([1.0, 0.5]), jnp.array([0.4, -0.6])
    return z + u * jnp.tanh(w @ z + 0.2)


def test_a_coupled_pair_on_the_whole_plane_is_solved_by_newton():
    inv = ppinv.inverse(tanh_sin, 1.0, 2.0)
    assert inv.n_theta == 0 and "Newton solve" in inv.describe()
    x = inv(tanh_sin(1.3, -0.7))
    np.testing.assert_allclose(x, [1.3, -0.7], rtol=1e-12)
    check_inverse(tanh_sin, 1.0, 2.0, n_points=3, dense_points=1, grad_points=1)


def test_a_vector_unknown_through_a_dot_product():
    z0 = jnp.array([0.3, -1.2])
    inv = ppinv.inverse(planar, z0)
    assert "Newton solve" in inv.describe()
    (z,) = inv(planar(z0))
    np.testing.assert_allclose(z, z0, rtol=1e-12)
    check_inverse(planar, z0, n_points=3, dense_points=1, grad_points=1)


def test_a_bounded_binding_equilibrium():
    inv = ppinv.inverse(binding, 0.3, 0.6, support=[UNIT, UNIT])
    assert "Newton solve" in inv.describe()
    check_inverse(binding, 0.3, 0.6, support=[UNIT, UNIT], n_points=3, dense_points=1, grad_points=1)


def strong_binding(a, b):  # K = 1/3: |∂y₁/∂b| = 3a reaches the diagonal 1 + 3b
    complex_ = 3.0 * a * b
    return a + complex_, b + complex_


def test_a_strongly_coupled_equilibrium_is_certified_on_pieces_of_its_box():
    from ppinv._ir import import_jaxpr

    prog = import_jaxpr(jax.make_jaxpr(strong_binding)(0.3, 0.6))
    whole = jacobian_enclosure(prog.eqns, prog.invars, [(0.0, 1.0)] * 2, prog.outvars, None)
    assert p_matrix_certificate(*whole) is None  # J₁₁ ∈ [1, 4] against J₁₂ ∈ [0, 3]: no proof at once
    inv = ppinv.inverse(strong_binding, 0.3, 0.6, support=[UNIT, UNIT])
    assert "Newton solve" in inv.describe()
    check_inverse(strong_binding, 0.3, 0.6, support=[UNIT, UNIT], n_points=3, dense_points=1, grad_points=1)


def test_gradient_of_a_function_of_the_solution_matches_central_differences():
    inv = ppinv.inverse(tanh_sin, 1.0, 2.0)

    def loss(y):
        x1, x2 = inv((y[0], y[1]))
        return jnp.sin(x1) * x2 + x1**2

    y = jnp.array(tanh_sin(0.8, -1.1))
    grad = jax.grad(loss)(y)
    h = 1e-6
    fd = [(loss(y + h * e) - loss(y - h * e)) / (2 * h) for e in jnp.eye(2)]
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


def test_log_det_is_minus_the_log_det_of_the_forward_jacobian():
    inv = ppinv.inverse(binding, 0.3, 0.6, support=[UNIT, UNIT])
    x = (0.45, 0.2)
    _, ld = inv.with_log_det(binding(*x))
    jac = jax.jacfwd(lambda t: jnp.stack(binding(t[0], t[1])))(jnp.array(x))
    np.testing.assert_allclose(ld, -jnp.linalg.slogdet(jac)[1], rtol=1e-12)


def test_an_observation_outside_the_image_is_flagged():
    inv = ppinv.inverse(binding, 0.3, 0.6, support=[UNIT, UNIT])
    outside = (2.0, 0.1)  # a + ab/2 ≤ 1.5 on the unit square
    assert not bool(inv.in_domain(outside))
    assert bool(inv.in_domain(binding(0.3, 0.6)))
    with pytest.raises(DomainError):
        inv(outside)
    assert not np.isfinite(jax.jit(lambda y: inv.with_log_det(y)[1])(outside))


def test_batched_under_jit_and_vmap():
    inv = ppinv.inverse(tanh_sin, 1.0, 2.0)
    xs = np.random.default_rng(0).normal(size=(5, 2)) * 3
    ys = jax.vmap(lambda x: jnp.stack(tanh_sin(x[0], x[1])))(jnp.asarray(xs))
    back = jax.jit(jax.vmap(lambda y: jnp.stack(inv((y[0], y[1])))))(ys)
    np.testing.assert_allclose(back, xs, rtol=1e-10, atol=1e-12)


def test_float32_unknowns_are_solved_in_float32():
    a, b = jnp.float32(1.3), jnp.float32(-0.7)
    inv = ppinv.inverse(tanh_sin, a, b)
    x = inv(tanh_sin(a, b))
    assert x[0].dtype == jnp.float32
    np.testing.assert_allclose(x, [1.3, -0.7], rtol=1e-6)


def two_roots(x1, x2):  # y₁ = x₁² + 0.3·tanh(x₂): x₁ and about −x₁ both solve it
    return x1**2 + 0.3 * jnp.tanh(x2), x2 + 0.2 * jnp.sin(x1)


def test_a_block_with_two_roots_is_refused():
    with pytest.raises(UnderdeterminedError, match="coupled"):
        ppinv.inverse(two_roots, 1.0, 2.0)
    # both roots exist: the refusal is not over-cautious here
    y = jnp.array(two_roots(1.0, 0.5))
    from scipy.optimize import fsolve

    other = fsolve(lambda x: np.array(two_roots(*x)) - np.asarray(y), [-1.0, 0.5])
    np.testing.assert_allclose(two_roots(*other), y, atol=1e-10)
    assert other[0] < -0.5


def test_a_square_pair_with_a_separate_sign_is_left_to_the_exact_solves():
    inv = ppinv.inverse(lambda x1, x2: (x1**2 + x2, x2), 1.0, 2.0)
    assert "Newton" not in inv.describe()
    (name,) = inv.theta_spec  # the sign of x₁: both preimages are reached
    roots = {round(float(inv((3.0, 2.0), {name: jnp.asarray(s)})[0]), 9) for s in (0, 1)}
    assert roots == {-1.0, 1.0}


# --- the certificate ----------------------------------------------------------------------
def test_p_matrix_certificate_on_interval_matrices():
    dominant = (np.array([[1.0, -0.3], [0.0, 0.8]]), np.array([[1.2, 0.3], [0.5, 1.0]]))
    assert p_matrix_certificate(*dominant) is not None
    # rows swapped and a row negated: the same certificate after a permutation and a sign
    swapped = (np.array([[0.0, 0.8], [-1.2, -0.3]]), np.array([[0.5, 1.0], [-1.0, 0.3]]))
    rows, signs, weights = p_matrix_certificate(*swapped)
    assert rows == [1, 0] and list(signs) == [-1.0, 1.0] and np.all(weights > 0)
    # dominant only after weighting the columns: |a₁₂| > a₁₁ but a₂₁ is tiny
    weighted = (np.array([[1.0, 3.0], [0.01, 1.0]]),) * 2
    assert p_matrix_certificate(*weighted) is not None
    # off-diagonal entries of either sign up to 2 (it holds [[1, 2], [2, 1]], det −3, and [[1, −2], [2, 1]])
    assert p_matrix_certificate(np.array([[1.0, -2.0], [-2.0, 1.0]]), np.array([[1.0, 2.0], [2.0, 1.0]])) is None
    # a diagonal that may vanish on the box
    assert p_matrix_certificate(np.array([[-1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])) is None


def test_jacobian_enclosure_holds_sampled_jacobians():
    from ppinv._ir import import_jaxpr

    w = jnp.array([[0.5, -1.0], [2.0, 0.3]])

    def f(x):
        s = jnp.concatenate([jnp.exp(-x[:1]), jnp.log1p(x[1:] ** 2)])
        return x + 0.1 * jnp.tanh(w @ s) * jnp.sum(x**1.5)

    prog = import_jaxpr(jax.make_jaxpr(f)(jnp.ones(2)))
    (leaf,), (out,) = prog.invars, prog.outvars
    lo, hi = jacobian_enclosure(prog.eqns, [leaf], [(np.array([0.5, 1.0]), np.array([2.0, 3.0]))], [out],
                                lambda v: (-np.inf, np.inf))
    assert np.all(np.isfinite(lo)) and np.all(lo <= hi)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = jnp.asarray(rng.uniform([0.5, 1.0], [2.0, 3.0]))
        jac = np.asarray(jax.jacfwd(f)(x))
        assert np.all(lo - 1e-12 <= jac) and np.all(jac <= hi + 1e-12)


# --- conditioning a NumPyro model through a Newton block -----------------------------------
def coupled_model():
    s = numpyro.sample("s", dist.Uniform(0.0, 0.5))
    x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
    x2 = numpyro.sample("x2", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.stack([x1 + s * jnp.tanh(x2), x2 + 0.2 * jnp.sin(x1)]))


Y_OBS = np.array([0.7, -0.4])


def _reference_log_density(s):
    """log p(s, x(s)) − log|det ∂y/∂x| with x(s) from scipy's root finder (no ppinv)."""
    from scipy.optimize import fsolve
    from scipy.stats import norm

    def residual(x):
        return [x[0] + s * np.tanh(x[1]) - Y_OBS[0], x[1] + 0.2 * np.sin(x[0]) - Y_OBS[1]]

    x1, x2 = fsolve(residual, Y_OBS, xtol=1e-13)
    jac = np.array([[1.0, s / np.cosh(x2) ** 2], [0.2 * np.cos(x1), 1.0]])
    return np.log(2.0) + norm.logpdf(x1) + norm.logpdf(x2) - np.log(abs(np.linalg.det(jac)))


def test_a_conditioned_model_has_the_exact_density_over_its_theta():
    cm = ppinv.condition(coupled_model, {"y": jnp.asarray(Y_OBS)})
    plan = cm.plan()
    assert set(plan.theta_sites) == {"s"} and "Newton solve" in plan.schedule.describe()
    density = jax.jit(lambda s: log_density(cm, (), {}, {"s": s})[0])
    for s in (0.05, 0.2, 0.45):
        np.testing.assert_allclose(density(jnp.asarray(s)), _reference_log_density(s), rtol=1e-10)
    # its derivative in the known input s of the block: the implicit function theorem
    s, h = jnp.asarray(0.3), 1e-6
    fd = (density(s + h) - density(s - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(density)(s), fd, rtol=1e-6)
