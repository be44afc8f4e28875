"""Rational functions of one unknown (ppinv/_poly/): y = P(x)/Q(x) solved from y·Q(x) − P(x) = 0.

Programs as users write them: Möbius maps with constants of every kind,
Michaelis–Menten kinetics with sampled constants, softsign over the real line
(the |x| kink), the logistic through exp, vector forms; quadratics whose roots
are admissible only inside the support and where Q ≠ 0; and a posterior
against quadrature.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.infer import MCMC
from scipy import integrate, stats

import ppinv
from ppinv.testing import check_inverse

positive = constraints.positive


def _discrete(inv):
    return [n for n, s in inv.theta_spec.items() if s.discrete]


def _joint_descriptions(inv):
    return " ".join(s.block.description for s in inv.schedule.steps if hasattr(s, "block"))


def test_x_over_one_plus_x_on_positive():
    f = lambda x: x / (1 + x)  # noqa: E731
    inv = ppinv.inverse(f, 0.5, support=positive)
    assert inv.theta_spec == {} and "Möbius" in _joint_descriptions(inv)
    y = 0.3
    np.testing.assert_allclose(inv(y, {})[0], y / (1 - y), rtol=1e-14)  # the closed form
    np.testing.assert_allclose(inv.log_abs_det_jacobian(y, {}), -2 * np.log(1 - y), rtol=1e-12)
    for outside in (1.2, -0.5):  # above the asymptote; a negative preimage outside the support
        assert not bool(inv.in_domain(outside, {}))
    check_inverse(f, 0.5, inv=inv, support=positive, n_points=3, dense_points=1, grad_points=1)


def test_affine_over_affine_with_jnp_constants():
    coef = jnp.array([2.0, -1.0, 0.5, 3.0])  # (a x + b) / (c x + d), pole at x = −6

    def f(x):
        return (coef[0] * x + coef[1]) / (coef[2] * x + coef[3])

    support = constraints.greater_than(-6.0)
    inv = ppinv.inverse(f, 0.5, support=support)
    assert inv.theta_spec == {}
    a, b, c, d = map(float, coef)
    y = 1.3
    np.testing.assert_allclose(inv(y, {})[0], (b - d * y) / (c * y - a), rtol=1e-13)
    assert not bool(inv.in_domain(a / c, {}))  # the horizontal asymptote is not in the range
    check_inverse(f, 0.5, inv=inv, support=support, n_points=3, dense_points=1, grad_points=1)


def test_michaelis_menten_with_sampled_constants():
    """Km and Vmax are inputs (sampled in a model), freed; S is solved by the Möbius block, and
    derivatives in Km and Vmax flow through its coefficients."""

    def rate(S, Km, Vmax):
        return Vmax * S / (Km + S)

    inv = ppinv.inverse(rate, 1.0, 0.5, 2.0, support=[positive] * 3, free=["Km", "Vmax"])
    assert "Möbius" in _joint_descriptions(inv) and not _discrete(inv)
    check_inverse(rate, 1.0, 0.5, 2.0, inv=inv, support=[positive] * 3, n_points=3, dense_points=1, grad_points=1)
    # jax.grad of the closed form x = v Km / (Vmax − v) against central differences
    theta = inv.pgf(1.0, 0.5, 2.0)

    def solved(v, km, vmax):
        return inv(v, {**theta, "Km": km, "Vmax": vmax})[0]

    point = (0.9, 0.7, 2.5)
    grad = jax.grad(solved, argnums=(0, 1, 2))(*point)
    for i, g in enumerate(grad):
        h = 1e-6
        up = list(point); up[i] += h  # noqa: E702
        dn = list(point); dn[i] -= h  # noqa: E702
        fd = (solved(*up) - solved(*dn)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-7)
    v, km, vmax = point
    np.testing.assert_allclose(solved(*point), v * km / (vmax - v), rtol=1e-14)


def test_michaelis_menten_captured_constants_vector():
    Vmax, Km = jnp.array([2.0, 1.0, 4.0]), jnp.array([0.5, 0.1, 3.0])
    f = lambda S: Vmax * S / (Km + S)  # noqa: E731
    inv = ppinv.inverse(f, jnp.ones(3), support=positive)
    assert inv.theta_spec == {}
    check_inverse(f, jnp.ones(3), inv=inv, support=positive, n_points=3, dense_points=1, grad_points=1)
    assert not bool(inv.in_domain(jnp.array([1.0, 1.5, 1.0]), {}))  # 1.5 > Vmax[1]: no preimage


def test_softsign_over_the_real_line():
    """x / (1 + |x|): a sign branch per side of the kink; both Möbius maps are increasing and
    pole-free on their sides, so the one admissible root is taken (no θ)."""
    f = lambda x: x / (1 + jnp.abs(x))  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    assert inv.theta_spec == {}
    for y in (-0.9, -0.2, 0.0, 0.4, 0.99):
        np.testing.assert_allclose(inv(y, {})[0], y / (1 - abs(y)), rtol=1e-12, atol=1e-300)
    assert not bool(inv.in_domain(1.0, {})) and not bool(inv.in_domain(-1.5, {}))
    points = [(-3.0,), (-0.4,), (0.2,), (7.0,)]
    check_inverse(f, 0.5, inv=inv, points=points, dense_points=1, grad_points=2)


def test_kinked_non_monotone_keeps_every_root():
    """x/(1 + |x|) − x/2 takes some values three times: θ picks (branch, root), every admissible
    choice is a preimage, and together they are all of them."""
    f = lambda x: x / (1 + jnp.abs(x)) - 0.5 * x  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    (name,) = _discrete(inv)
    y = float(f(0.3))
    found = set()
    for code in range(4):
        theta = {name: jnp.asarray(code)}
        if bool(inv.in_domain(y, theta)):
            (x,) = inv(y, theta)
            np.testing.assert_allclose(f(x), y, rtol=1e-12)
            found.add(round(float(x), 9))
    grid = np.linspace(-10, 10, 200001)
    crossings = np.sum(np.diff(np.sign(grid / (1 + np.abs(grid)) - 0.5 * grid - y)) != 0)
    assert len(found) == crossings == 3
    check_inverse(f, 0.5, inv=inv, points=[(0.3,), (2.5,), (-3.0,)], dense_points=1, grad_points=1)


def test_logistic_through_exp():
    def logistic(x):
        e = jnp.exp(x)
        return e / (1 + e)

    inv = ppinv.inverse(logistic, 0.5)
    assert inv.theta_spec == {}
    np.testing.assert_allclose(inv(0.25, {})[0], np.log(0.25 / 0.75), rtol=1e-13)
    assert not bool(inv.in_domain(1.5, {}))  # e = y/(1 − y) < 0: outside exp's image
    check_inverse(logistic, 0.5, inv=inv, n_points=3, dense_points=1, grad_points=1)


def test_quadratic_root_outside_the_support_is_not_admissible():
    """x²/(1 + x) = y has roots (y ± √(y² + 4y))/2; on x > 0 only the larger is a preimage."""
    f = lambda x: x * x / (1 + x)  # noqa: E731
    inv = ppinv.inverse(f, 0.5, support=positive)
    (name,) = _discrete(inv)
    y = 0.8
    assert bool(inv.in_domain(y, {name: 0})) and not bool(inv.in_domain(y, {name: 1}))
    np.testing.assert_allclose(inv(y, {name: 0})[0], (y + np.sqrt(y * y + 4 * y)) / 2, rtol=1e-13)
    check_inverse(f, 0.5, inv=inv, support=positive, n_points=3, dense_points=1, grad_points=1)


def test_root_where_the_denominator_vanishes_is_not_admissible():
    """(x² − 1)/(x − 1): y(x − 1) − (x² − 1) = 0 has the root x = 1, where the program divides by
    zero; only x = y − 1 is a preimage."""
    f = lambda x: (x * x - 1) / (x - 1)  # noqa: E731
    inv = ppinv.inverse(f, 3.0, support=constraints.greater_than(2.0))
    (name,) = _discrete(inv)
    y = 4.5  # roots 3.5 and 1
    codes = [c for c in (0, 1) if bool(inv.in_domain(y, {name: c}))]
    assert codes == [0]
    np.testing.assert_allclose(inv(y, {name: 0})[0], 3.5, rtol=1e-13)


def test_log_det_and_gradients_of_a_vector_moebius():
    A, B = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5])
    f = lambda x: (A * x + 1.0) / (x + B)  # noqa: E731
    support = constraints.greater_than(0.0)
    check_inverse(f, jnp.ones(2), support=support, n_points=3, dense_points=1, grad_points=1)


# --- a posterior -------------------------------------------------------------------------------
VMAX, V_OBS = 2.0, 1.2
S_PRIOR, KM_PRIOR = (0.0, 0.5), (np.log(0.5), 0.4)  # LogNormal(loc, scale)


def _mm_model():
    S = numpyro.sample("S", dist.LogNormal(*S_PRIOR))
    Km = numpyro.sample("Km", dist.LogNormal(*KM_PRIOR))
    numpyro.deterministic("v", VMAX * S / (Km + S))


def _quadrature_moments():
    """p(Km | v) ∝ p(Km) p_S(S(Km)) |∂S/∂v|, S = v Km / (Vmax − v): moments of S and Km."""

    def density(km):
        s = V_OBS * km / (VMAX - V_OBS)
        jac = km * VMAX / (VMAX - V_OBS) ** 2
        return stats.lognorm.pdf(km, KM_PRIOR[1], scale=np.exp(KM_PRIOR[0])) * stats.lognorm.pdf(
            s, S_PRIOR[1], scale=np.exp(S_PRIOR[0])) * jac

    z = integrate.quad(density, 0, np.inf)[0]
    mean_km = integrate.quad(lambda k: k * density(k), 0, np.inf)[0] / z
    var_km = integrate.quad(lambda k: k * k * density(k), 0, np.inf)[0] / z - mean_km**2
    return mean_km, np.sqrt(var_km)


@pytest.mark.slow
def test_michaelis_menten_posterior_against_quadrature():
    conditioned = ppinv.condition(_mm_model, {"v": V_OBS}, free=["Km"])
    mcmc = MCMC(ppinv.infer.InverseNUTS(conditioned), num_warmup=400, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1))
    s = mcmc.get_samples()
    np.testing.assert_allclose(VMAX * s["S"] / (s["Km"] + s["S"]), V_OBS, rtol=1e-10)
    mean_km, sd_km = _quadrature_moments()
    # S = v Km/(Vmax − v) exactly, so Km's moments say everything; tolerance ~4 Monte-Carlo
    # standard errors at an effective sample size of a few hundred
    assert abs(float(jnp.mean(s["Km"])) - mean_km) < 4 * sd_km / np.sqrt(300)
    assert abs(float(jnp.std(s["Km"])) - sd_km) < 0.15 * sd_km
    np.testing.assert_allclose(s["S"], V_OBS * s["Km"] / (VMAX - V_OBS), rtol=1e-10)
