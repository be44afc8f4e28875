"""Piecewise inverses never drop a piece (issue 9, defects 1, 5 and the cone crash of 7).

A piece is either inverted — the inverse reaches every preimage on it, with the
right log|det| and derivatives — or the program is refused naming the piece.
Flat pieces (where an output does not depend on the variable solved for) carry
posterior mass when the output is computed from θ; ppinv then computes the
variable forwards, or picks among the pieces with a discrete θ (``max`` of two
unknowns), or refuses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax
from jax.flatten_util import ravel_pytree
from scipy import integrate, stats

import ppinv
from ppinv._piecewise import FlatPieceError
from ppinv.errors import InversionError, NoRuleError
from ppinv.infer import InverseNUTS
from tests.helpers import assert_mean, run_mcmc


# --- independent references ---------------------------------------------------------------
def _continuous(inv):
    return [n for n, s in inv.theta_spec.items() if not s.discrete]


def _as_vector_fn(inv, fn, y, theta):
    """``fn(y, θ)`` as a function of one flat vector holding y and the continuous θ."""
    names = _continuous(inv)
    flat, unravel = ravel_pytree((y, {n: theta[n] for n in names}))

    def g(vec):
        yy, cont = unravel(vec)
        return fn(yy, {**theta, **cont})

    return g, flat


def dense_log_det(inv, y, theta):
    """log|det ∂x/∂(y, θ_continuous)| from jax.jacfwd and slogdet."""
    g, z = _as_vector_fn(inv, lambda yy, th: ravel_pytree(inv(yy, th))[0], y, theta)
    jac = jax.jacfwd(g)(z)
    assert jac.shape[0] == jac.shape[1], jac.shape
    return float(np.linalg.slogdet(np.asarray(jac))[1])


def central_differences(fn, z, eps=1e-6):
    z = np.asarray(z, np.float64)
    out = np.zeros_like(z)
    for i in range(z.size):
        dz = np.zeros_like(z)
        dz[i] = eps * (abs(z[i]) if abs(z[i]) > 1e-8 else 1.0)  # relative: y = erfc(3) is 2e-5
        out[i] = (float(fn(jnp.asarray(z + dz))) - float(fn(jnp.asarray(z - dz)))) / (2 * dz[i])
    return out


def check_gradients(inv, y, theta, rtol=1e-5, atol=1e-7, eps=1e-6):
    """jax.grad of the inverse (a fixed random projection of x) and of log|det| against
    central differences, in y and the continuous θ."""
    n_x = ravel_pytree(inv(y, theta))[0].size
    w = jnp.asarray(np.random.default_rng(0).normal(size=n_x))
    for fn in (
        lambda yy, th: jnp.dot(w, ravel_pytree(inv(yy, th))[0]),
        lambda yy, th: inv.log_abs_det_jacobian(yy, th),
    ):
        g, z = _as_vector_fn(inv, fn, y, theta)
        auto = np.asarray(jax.grad(g)(z))
        numeric = central_differences(g, z, eps)
        np.testing.assert_allclose(auto, numeric, rtol=rtol, atol=atol)


def check_point(f, inv, x, rtol=1e-10, grads=True, eps=1e-6):
    """At the input ``x``: PGF round trip, soundness at θ = φ(x), log|det| against the dense value."""
    x = tuple(jnp.asarray(v, jnp.float64) for v in x)
    y = f(*x)
    theta = inv.pgf(*x)
    back = inv(y, theta)
    for a, b in zip(back, x):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(f(*back), y, rtol=1e-12, atol=1e-12)
    ld = float(inv.log_abs_det_jacobian(y, theta))
    assert np.isfinite(ld)
    np.testing.assert_allclose(ld, dense_log_det(inv, y, theta), rtol=1e-8, atol=1e-8)
    if grads:
        check_gradients(inv, y, theta, eps=eps)
    return y, theta, ld


# --- defect 1: a piece with no rule is refused, never dropped; ndtr over its whole range ----
def test_piece_without_rule_refuses_naming_it():
    f = lambda x: jnp.where(x > 1.0, jnp.exp(x), jax.scipy.special.gammaln(x))  # noqa: E731
    with pytest.raises(NoRuleError, match=r"(?s)case 0.*piecewise.*lgamma"):
        ppinv.inverse(f, 2.0)


def test_piece_with_unbounded_choice_refuses_naming_it():
    """sin on a piece has infinitely many preimages per element: refused, not half-inverted."""
    with pytest.raises(InversionError, match=r"case 0.*sin_period"):
        ppinv.inverse(lambda x: jnp.where(x > 1.0, jnp.exp(x), jnp.sin(x)), 2.0)


def test_piece_with_a_sign_choice_is_inverted():
    """x² + 1 on x ≤ 0 needs the sign θ of the square root; the predicate keeps the negative one."""
    f = lambda x: jnp.where(x > 0, jnp.exp(x), x * x + 1.0)  # noqa: E731
    inv = ppinv.inverse(f, 1.0)
    for x in (-2.0, -0.3, 0.4, 2.0):
        _, _, ld = check_point(f, inv, (x,))
        expected = -x if x > 0 else -np.log(2 * abs(x))
        np.testing.assert_allclose(ld, expected, rtol=1e-12)


NDTR_POINTS = (-6.0, -3.0, -1.5, -1.0, -0.6, 0.0, 0.5, 1.0, 1.5, 3.0, 6.0)  # ±1: on the pieces' boundary


@pytest.fixture(scope="module")
def ndtr_inverse():
    return ppinv.inverse(jax.scipy.special.ndtr, 0.0)


def test_ndtr_inverts_over_its_whole_range(ndtr_inverse):
    ndtr, inv = jax.scipy.special.ndtr, ndtr_inverse
    for a in NDTR_POINTS:
        # y = Φ(a) near 1 keeps only ~1e-16/φ(a) absolute precision in a: that is the tolerance
        tol = max(1e-12, 1e-15 / stats.norm.pdf(a))
        # (no differences across the boundary at ±1: a step there leaves the piece θ picks)
        y, theta, ld = check_point(ndtr, inv, (a,), rtol=tol, grads=abs(a) < 5 and abs(a) != 1.0,
                                   eps=1e-8 if abs(a) > 2 else 1e-6)
        np.testing.assert_allclose(ld, -stats.norm.logpdf(a), rtol=max(1e-12, tol))
        assert bool(inv.in_domain(y, theta))
    # the reproducer: 1.5 is a preimage of Φ(1.5)
    (x,) = inv(ndtr(1.5), inv.pgf(1.5))
    np.testing.assert_allclose(x, 1.5, rtol=1e-14)


def test_ndtr_gradients_in_the_tails(ndtr_inverse):
    inv = ndtr_inverse
    for a in (-6.0, -3.0, 3.0):
        y = jax.scipy.special.ndtr(a)
        theta = inv.pgf(a)
        dx = float(jax.grad(lambda yy: inv(yy, theta)[0])(y))
        np.testing.assert_allclose(dx, 1.0 / stats.norm.pdf(a), rtol=1e-8)
        dld = float(jax.grad(lambda yy: inv.log_abs_det_jacobian(yy, theta))(y))
        np.testing.assert_allclose(dld, a / stats.norm.pdf(a), rtol=1e-7)  # d/dy (−log φ(x)) = x / φ(x)


def test_erfc_rule():
    inv = ppinv.inverse(jax.scipy.special.erfc, 0.0)
    for x in (-3.0, -0.5, 0.0, 0.7, 3.0, 6.0, 21.0):
        # erfc(−3) = 2 − 2e-5: the difference step must be small against the distance to 2
        check_point(jax.scipy.special.erfc, inv, (x,), rtol=1e-12, grads=abs(x) < 5, eps=1e-9 if x < -1 else 1e-6)
    assert not bool(inv.in_domain(2.0, {})) and not bool(inv.in_domain(0.0, {}))


def normal_cdf_plus_noise():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 0.05))
    numpyro.deterministic("y", jax.scipy.special.ndtr(a) + b)


@pytest.mark.slow
def test_ndtr_posterior_is_not_cut_off():
    """Observe Φ(a) + b = 0.95: most of the posterior lies at a > 1, beyond the erf piece."""
    y = 0.95

    def dens(a):
        return stats.norm.pdf(a) * stats.norm.pdf(y - stats.norm.cdf(a), scale=0.05)

    z, _ = integrate.quad(dens, -10, 10, points=[1.0, 2.0])
    p_beyond, _ = integrate.quad(dens, 1.0, 10, points=[2.0])
    p_beyond /= z
    assert p_beyond > 0.5
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(normal_cdf_plus_noise, {"y": y})), num_warmup=300, num_samples=1500)
    s = mcmc.get_samples()
    ind = np.asarray(s["a"] > 1.0, np.float64)
    assert_mean(ind, p_beyond, sd=np.sqrt(p_beyond * (1 - p_beyond)), what="P(a > 1 | y)")
    np.testing.assert_allclose(jax.scipy.special.ndtr(s["a"]) + s["b"], y, atol=1e-12)


# --- defect 5: flat pieces ------------------------------------------------------------------
def test_logaddexp_of_relu_reaches_both_pieces():
    f = lambda a, b: jnp.logaddexp(jax.nn.relu(b), a)  # noqa: E731
    inv = ppinv.inverse(f, 1.0, 1.0)
    for x in ((3.0, -1.0), (3.0, 2.0), (-0.5, -2.0), (0.2, 0.7)):
        check_point(f, inv, x)


@pytest.mark.parametrize(
    "name, f, points",
    [
        ("relu", lambda a, c: a + jax.nn.relu(c), ((1.0, -1.0), (0.0, 1.0))),
        ("clip", lambda a, c: a + jnp.clip(c, -1.0, 1.0), ((1.0, -2.0), (0.0, 0.5), (0.3, 3.0))),
        ("where-constant", lambda a, c: a * 2.0 + jnp.where(c > 0, jnp.exp(c), 0.5), ((1.0, -2.0), (0.0, 0.5))),
        ("relu-vector", lambda a, c: a + jax.nn.relu(c), ((jnp.array([1.0, 2.0, 3.0]), jnp.array([-1.0, 2.0, -3.0])),)),
    ],
)
def test_flat_piece_with_solved_output_is_reached(name, f, points):
    """The output of the flat relation is solved from θ here, so the flat piece holds mass:
    every point of it must be reached (the variable behind it is computed forwards)."""
    inv = ppinv.inverse(f, *[jnp.zeros_like(jnp.asarray(v)) for v in points[0]])
    for x in points:
        check_point(f, inv, x)


@pytest.mark.parametrize("extreme, sign", [(jnp.maximum, 1), (jnp.minimum, -1)])
def test_max_min_of_two_unknowns(extreme, sign):
    """θ picks which operand attains the value and the positive gap to the other."""
    f = lambda a, b: extreme(a, b)  # noqa: E731
    inv = ppinv.inverse(f, 1.0, 1.0)
    for x in ((1.0, 0.0), (0.0, 1.0), (-2.0, 3.5)):
        y, theta, ld = check_point(f, inv, x)
        assert ld == 0.0
        k = next(v for n, v in theta.items() if inv.theta_spec[n].discrete)
        assert int(k) == int(sign * x[1] > sign * x[0])
    vec = ppinv.inverse(f, jnp.ones(3), jnp.ones(3))
    check_point(f, vec, (jnp.array([1.0, 2.0, -3.0]), jnp.array([-1.0, 2.5, -3.5])))


def max_plus_a(a, b):
    return jnp.maximum(a, b) + a


def test_unavoidable_flat_piece_gives_a_union_of_schedules():
    """max(a, b) + a = y: every schedule solves the max for one operand from a value computed
    from θ. The inverse is the union of two schedules — b > a: a = θ, b = y − θ; b ≤ a (the
    flat piece): a = y/2, b = θ — with a discrete θ choosing one."""
    inv = ppinv.inverse(max_plus_a, 1.0, 1.0)
    assert inv.n_theta == 1
    piece = next(n for n, s in inv.theta_spec.items() if s.discrete)
    for (a, b), k, ld in (((1.0, 2.0), 0, 0.0), ((2.0, 1.0), 1, -np.log(2.0)), ((-0.5, -3.0), 1, -np.log(2.0))):
        y, theta, got = check_point(max_plus_a, inv, (a, b))
        assert int(theta[piece]) == k
        np.testing.assert_allclose(got, ld, atol=1e-12)
    # one θ value means a different point on each side; each side checks it is on its piece
    y, name = 4.0, next(n for n, s in inv.theta_spec.items() if not s.discrete)
    np.testing.assert_allclose(inv(y, {name: 1.5, piece: 0}), (1.5, 2.5))
    np.testing.assert_allclose(inv(y, {name: 1.5, piece: 1}), (2.0, 1.5))
    for k in (0, 1):  # θ = 3: b = 1 < a on the first side, b = 3 > a = 2 on the second
        assert not bool(inv.in_domain(y, {name: 3.0, piece: k}))


def max_plus_a_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", max_plus_a(a, b))


@pytest.mark.slow
def test_union_posterior_against_quadrature():
    """P(b > a | max(a, b) + a = y), the two pieces' masses by quadrature."""
    y = 0.7
    on_slope, _ = integrate.quad(lambda t: stats.norm.pdf(t) * stats.norm.pdf(y - t), -np.inf, y / 2)
    on_flat = 0.5 * stats.norm.pdf(y / 2) * stats.norm.cdf(y / 2)  # a = y/2: |∂a/∂y| = 1/2
    p = on_slope / (on_slope + on_flat)
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(max_plus_a_model, {"y": y})), num_warmup=300, num_samples=2000)
    s = mcmc.get_samples()
    assert_mean(np.asarray(s["b"] > s["a"], np.float64), p, sd=np.sqrt(p * (1 - p)), what="P(b > a | y)")
    np.testing.assert_allclose(max_plus_a(s["a"], s["b"]), y, atol=1e-12)


def test_flat_piece_that_no_schedule_reaches_is_refused_naming_it():
    """2·relu(b) + max(a, b): on the flat piece a ≤ b, b solves 2·relu(b) + b = y, which no
    rule solves: refused, naming the max and why."""
    with pytest.raises(FlatPieceError, match=r"(?s)max\(a.*flat piece.*a:float64\[\] <= b"):
        ppinv.inverse(lambda a, b: 2.0 * jax.nn.relu(b) + jnp.maximum(a, b), 1.0, 1.0)
    # inside a cond branch ppinv cannot tell whether the branch's output is fixed by the data
    # or computed from θ outside: a flat piece there that the branch must solve through is refused
    g = lambda a, b: lax.cond(a > 0, lambda v: jax.nn.relu(v), lambda v: v, b) + a  # noqa: E731
    with pytest.raises(FlatPieceError, match=r"(?s)branch 1 of the cond.*max\(b"):
        ppinv.inverse(g, 1.0, 1.0)


def test_flat_piece_fixed_by_the_observation_is_still_inverted():
    """relu(x) = y observed directly: the flat piece (x ≤ 0) is reached only at y = 0, a null set."""
    inv = ppinv.inverse(jax.nn.relu, 1.0)
    assert inv.n_theta == 0
    check_point(jax.nn.relu, inv, (2.0,))
    clip = ppinv.inverse(lambda x: jnp.clip(x, 0.0, 1.0), 0.5)
    check_point(lambda x: jnp.clip(x, 0.0, 1.0), clip, (0.5,))


def relu_sum():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a + jax.nn.relu(c))


@pytest.mark.slow
def test_relu_sum_posterior_keeps_the_flat_piece():
    """a, c ~ N(0, 1), a + relu(c) = 0.5: P(c < 0 | y) = 0.510 (quadrature)."""
    y = 0.5
    flat = stats.norm.cdf(0.0) * stats.norm.pdf(y)
    slope, _ = integrate.quad(lambda c: stats.norm.pdf(c) * stats.norm.pdf(y - c), 0.0, np.inf)
    p = flat / (flat + slope)
    np.testing.assert_allclose(p, 0.510, atol=5e-4)
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(relu_sum, {"y": y})), num_warmup=300, num_samples=2000)
    s = mcmc.get_samples()
    assert_mean(np.asarray(s["c"] < 0, np.float64), p, sd=np.sqrt(p * (1 - p)), what="P(c < 0 | y)")
    np.testing.assert_allclose(s["a"] + jax.nn.relu(s["c"]), y, atol=1e-12)


def max_of_two():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(1.0, 1.0))
    numpyro.deterministic("y", jnp.maximum(a, b))


@pytest.mark.slow
def test_max_posterior_keeps_both_branches():
    """a ~ N(0, 1), b ~ N(1, 1), max(a, b) = 1: P(a is the max | y) = 0.265 (quadrature)."""
    y = 1.0
    a_max = stats.norm.pdf(y) * integrate.quad(lambda b: stats.norm.pdf(b, 1.0), -np.inf, y)[0]
    b_max = stats.norm.pdf(y, 1.0) * integrate.quad(lambda a: stats.norm.pdf(a), -np.inf, y)[0]
    p = a_max / (a_max + b_max)
    np.testing.assert_allclose(p, 0.265, atol=5e-4)
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(max_of_two, {"y": y})), num_warmup=300, num_samples=2000)
    s = mcmc.get_samples()
    is_a = np.asarray(s["a"] > s["b"], np.float64)
    assert_mean(is_a, p, sd=np.sqrt(p * (1 - p)), what="P(a is the max | y)")
    np.testing.assert_allclose(np.maximum(s["a"], s["b"]), y, atol=1e-12)
    # the other operand, given which one attains y, is the prior truncated below y
    below = np.asarray(np.where(is_a > 0, s["b"], s["a"]))
    assert np.all(below < y)


# --- defect 7 (cone): only elementwise relations belong to a piecewise cone -----------------
def test_piecewise_after_cumsum():
    h = lambda b: 1000.0 - jax.nn.elu(jnp.cumsum(b))  # noqa: E731
    inv = ppinv.inverse(h, jnp.ones(2))
    for b in (jnp.array([0.3, 0.4]), jnp.array([-0.5, -0.3]), jnp.array([0.5, -1.5])):
        check_point(h, inv, (b,), rtol=1e-10)


def test_piecewise_after_reverse():
    f = lambda x: jax.nn.elu(x[::-1]) * 2.0  # noqa: E731
    inv = ppinv.inverse(f, jnp.ones(3))
    check_point(f, inv, (jnp.array([1.0, -2.0, 0.5]),))


def test_piecewise_inside_a_cond_branch_still_inverts():
    """A where inside a branch, solved from the branch's observed output."""
    f = lambda x: lax.cond(x > 5.0, lambda v: v + 1.0, lambda v: jax.nn.elu(v), x)  # noqa: E731
    inv = ppinv.inverse(f, 1.0)
    for x in (-1.0, 0.5, 7.0):
        check_point(f, inv, (x,))
