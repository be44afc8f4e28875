"""Exact conditioning: posteriors against closed forms (DESIGN §4), and the density identity."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import NUTS
from numpyro.infer.util import log_density

import ppinv
from ppinv.infer import InverseMH, InverseNUTS
from tests.helpers import assert_mean, assert_var, run_mcmc


def lognormal_product():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def test_lognormal_product_posterior():
    """log a + log b = log y with standard normal logs: log a | y ~ N(log(y)/2, 1/2)."""
    y = 2.0
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(lognormal_product, {"y": y})), num_samples=3000)
    s = mcmc.get_samples()
    la = np.log(s["a"])
    assert_mean(la, np.log(y) / 2, sd=np.sqrt(0.5))
    assert_var(la, 0.5)
    np.testing.assert_allclose(s["a"] * s["b"], y, rtol=1e-12)
    assert "y" not in s  # the exact observation is data, not a site of the conditioned model


A = np.array([[1.0, 2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 1.0, 1.0, -2.0]])
Y_LIN = np.array([1.0, -0.5])


def linear_gaussian():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([5]).to_event(1))
    numpyro.deterministic("y", jnp.asarray(A) @ x)


def test_affine_subspace_gaussian():
    """x ~ N(0, I_5) given A x = y: mean A⁺y, covariance I − A⁺A."""
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(linear_gaussian, {"y": Y_LIN})), num_samples=3000)
    x = np.asarray(mcmc.get_samples()["x"])
    pinv = np.linalg.pinv(A)
    cov = np.eye(5) - pinv @ A
    assert_mean(x, pinv @ Y_LIN, sd=np.sqrt(np.diag(cov)))
    assert_var(x, np.diag(cov))
    np.testing.assert_allclose(x @ A.T, np.broadcast_to(Y_LIN, (len(x), 2)), atol=1e-10)


ALPHA = np.array([0.5, 1.0, 2.0, 3.5])


def gamma_sum():
    x = numpyro.sample("x", dist.Gamma(jnp.asarray(ALPHA), 1.0).to_event(1))
    numpyro.deterministic("total", jnp.sum(x))


@pytest.mark.slow
def test_sum_of_gammas_is_dirichlet():
    """x_i ~ Gamma(α_i, 1) given Σx = y: x / y ~ Dirichlet(α), θ on the simplex."""
    y = 3.0
    cm = ppinv.condition(gamma_sum, {"total": y})
    spec = cm.plan().schedule.theta
    assert [s.kind for s in spec.values()] == ["simplex"]
    mcmc = run_mcmc(InverseNUTS(cm), num_samples=3000)
    w = np.asarray(mcmc.get_samples()["x"]) / y
    a0 = ALPHA.sum()
    mean = ALPHA / a0
    var = mean * (1 - mean) / (a0 + 1)
    assert_mean(w, mean, sd=np.sqrt(var))
    assert_var(w, var)


def additive_exact():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(1.0, 0.5))
    c = numpyro.sample("c", dist.Normal(0.0, 0.3))
    numpyro.deterministic("y", a * b + jnp.sin(a) + c)


def additive_likelihood():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(1.0, 0.5))
    numpyro.sample("y", dist.Normal(a * b + jnp.sin(a), 0.3), obs=1.2)


@pytest.mark.slow
def test_additive_noise_equals_ordinary_likelihood():
    """y = h(a, b) + c: exact conditioning is the model with c's density as likelihood."""
    exact = run_mcmc(InverseNUTS(ppinv.condition(additive_exact, {"y": 1.2})), num_samples=4000, key=1)
    ref = run_mcmc(NUTS(additive_likelihood), num_samples=4000, key=2)
    for site in ("a", "b"):
        e, r = np.asarray(exact.get_samples()[site]), np.asarray(ref.get_samples()[site])
        # two-sample z-test: both estimates carry Monte Carlo error
        se = np.sqrt(np.var(e) / 1000 + np.var(r) / 1000)
        assert abs(e.mean() - r.mean()) < 4.5 * se, (site, e.mean(), r.mean())


def product_ab():
    a = numpyro.sample("a", dist.Normal(1.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("y", a * b + a)


def product_ba():  # the same model with the latents declared the other way round
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    a = numpyro.sample("a", dist.Normal(1.0, 1.0))
    numpyro.deterministic("y", a + b * a)


@pytest.mark.slow
def test_two_schedules_same_posterior():
    cm1, cm2 = ppinv.condition(product_ab, {"y": 2.5}), ppinv.condition(product_ba, {"y": 2.5})
    m1 = run_mcmc(InverseNUTS(cm1), num_samples=3000, key=3)
    m2 = run_mcmc(InverseNUTS(cm2), num_samples=3000, key=4)
    for site in ("a", "b"):
        e1, e2 = np.asarray(m1.get_samples()[site]), np.asarray(m2.get_samples()[site])
        se = np.sqrt(np.var(e1) / 600 + np.var(e2) / 600)
        assert abs(e1.mean() - e2.mean()) < 4.5 * se, (site, e1.mean(), e2.mean())


def test_transformed_potential_identity():
    """log density of the conditioned model at θ == log p_X(g(y, θ)) + log|det| (exactly)."""
    cm = ppinv.condition(additive_exact, {"y": 1.2})
    plan = cm.plan()
    theta = {n: jnp.asarray({"a": 0.3, "b": 0.8}[n]) for n in plan.theta_sites}  # θ: freed latents, by name
    ld, tr = log_density(cm, (), {}, {plan.theta_sites[n]: v for n, v in theta.items()})
    x, log_det, ok = plan.invert([], theta)
    prior = (
        dist.Normal(0.0, 1.0).log_prob(x["a"])
        + dist.Normal(1.0, 0.5).log_prob(x["b"])
        + dist.Normal(0.0, 0.3).log_prob(x["c"])
    )
    assert bool(ok)
    np.testing.assert_allclose(ld, prior + log_det, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_vectorized_and_sequential_chains_agree():
    cm = ppinv.condition(lognormal_product, {"y": 2.0})
    seq = run_mcmc(InverseNUTS(cm), num_warmup=200, num_samples=300, num_chains=2, chain_method="sequential")
    vec = run_mcmc(InverseNUTS(cm), num_warmup=200, num_samples=300, num_chains=2, chain_method="vectorized")
    np.testing.assert_allclose(seq.get_samples()["a"], vec.get_samples()["a"], rtol=1e-8)


def hyperbola():
    a = numpyro.sample("a", dist.Normal(0.6, 1.0))
    b = numpyro.sample("b", dist.Normal(0.6, 1.0))
    numpyro.deterministic("y", a * b)


def _branch_weight_negative(y=1.0, mu=0.6):
    """P(a < 0 | a b = y) by quadrature of p(a) p(y/a) / |a|."""
    from scipy import integrate, stats

    dens = lambda a: stats.norm.pdf(a, mu) * stats.norm.pdf(y / a, mu) / abs(a)  # noqa: E731
    neg = integrate.quad(dens, -np.inf, 0, limit=200)[0]
    pos = integrate.quad(dens, 0, np.inf, limit=200)[0]
    return neg / (neg + pos)


@pytest.mark.slow
def test_two_modes_need_jumps():
    """a·b = 1: the branches a>0 and a<0 are separated (b = y/a blows up at a = 0).

    NUTS alone, started on one branch, never leaves it; with independence
    jumps from the inverse the branch weights come out right.
    """
    cm = ppinv.condition(hyperbola, {"y": 1.0})
    (theta_site,) = cm.plan().theta_sites.values()
    start = {theta_site: jnp.asarray(1.0)}
    alone = run_mcmc(InverseNUTS(cm), num_warmup=300, num_samples=1500, init_params=start)
    assert np.mean(np.asarray(alone.get_samples()["a"]) < 0) == 0.0
    w_neg = _branch_weight_negative()
    jumps = run_mcmc(InverseNUTS(cm, jump_every=1), num_warmup=300, num_samples=4000, init_params=start, key=5)
    neg = (np.asarray(jumps.get_samples()["a"]) < 0).astype(float)
    assert_mean(neg, w_neg, sd=np.sqrt(w_neg * (1 - w_neg)), what="P(a<0)")


def squared():
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    numpyro.deterministic("y", x * x)


@pytest.mark.parametrize("kernel", [InverseNUTS, InverseMH])
def test_sign_branches_by_discrete_gibbs(kernel):
    """y = x²: two preimages ±√y, weighted by the prior at each."""
    cm = ppinv.condition(squared, {"y": 1.0})
    mcmc = run_mcmc(kernel(cm), num_warmup=300, num_samples=3000)
    pos = (np.asarray(mcmc.get_samples()["x"]) > 0).astype(float)
    w = np.exp(-0.5 * 0.25) / (np.exp(-0.5 * 0.25) + np.exp(-0.5 * 2.25))
    assert_mean(pos, w, sd=np.sqrt(w * (1 - w)), what="P(x>0)")
