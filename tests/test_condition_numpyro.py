"""A conditioned model is an ordinary NumPyro model (DESIGN §5).

Stock NUTS/HMC/DiscreteHMCGibbs/SVI/Predictive run on it and agree with the
exact posterior; ppinv's kernels work with every ``chain_method``, the progress
bar, ``print_summary`` and ArviZ; and the models in scope (supports, vector
sites, several observations, model arguments, Delta sites, periodic inverses)
give the right posteriors. Tolerances come from Monte Carlo error
(``tests/helpers.py``); reference values are closed forms or quadrature.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import HMC, MCMC, NUTS, SVI, DiscreteHMCGibbs, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.util import log_density
from scipy import integrate, stats

import ppinv
import ppinv.handlers
from ppinv.diagnostics import constraint_violation, to_inference_data
from ppinv.infer import InverseHMC, InverseMH, InverseNUTS
from tests.helpers import Z_MAX, assert_mean, assert_var, run_mcmc

LOG_Y = np.log(2.0)


def lognormal_product():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def _check_lognormal_product(samples):
    """a·b = 2 with standard normal logs: log a | y ~ N(log 2 / 2, 1/2), exactly on the constraint."""
    la = np.log(np.asarray(samples["a"]))
    assert_mean(la, LOG_Y / 2, sd=np.sqrt(0.5), what="E[log a]")
    assert_var(la, 0.5)
    np.testing.assert_allclose(samples["a"] * samples["b"], 2.0, rtol=1e-12)


# --- stock NumPyro algorithms ---------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [NUTS, HMC])
def test_stock_kernels(kernel):
    """Stock NUTS/HMC initialise themselves (uniform in unconstrained θ) and hit the closed form,
    which is also what InverseNUTS gives (tests/test_condition.py::test_lognormal_product_posterior)."""
    cm = ppinv.condition(lognormal_product, {"y": 2.0})
    mcmc = run_mcmc(kernel(cm), num_warmup=300, num_samples=1500)
    _check_lognormal_product(mcmc.get_samples())


def signed_root():
    """y = x²·b: θ is b (positive) and the sign of x (discrete)."""
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("y", x * x * b)


def _signed_root_reference(y=1.0):
    """P(x > 0) and E[log b] given x²b = y, by quadrature over b of p(b) p(±√(y/b)) |∂x/∂y|."""

    def dens(b, s):
        x = s * np.sqrt(y / b)
        return stats.lognorm.pdf(b, 0.5) * stats.norm.pdf(x, 0.5, 1.0) / (2 * np.sqrt(y * b))

    mass = {s: integrate.quad(dens, 0, np.inf, args=(s,), limit=200)[0] for s in (1, -1)}
    total = mass[1] + mass[-1]
    m1 = sum(integrate.quad(lambda b, s=s: np.log(b) * dens(b, s), 0, np.inf, limit=200)[0] for s in (1, -1))
    m2 = sum(integrate.quad(lambda b, s=s: np.log(b) ** 2 * dens(b, s), 0, np.inf, limit=200)[0] for s in (1, -1))
    mean = m1 / total
    return mass[1] / total, mean, np.sqrt(m2 / total - mean**2)


@pytest.mark.parametrize("kernel", ["DiscreteHMCGibbs", "InverseNUTS"])
def test_discrete_theta_stock_gibbs_and_inverse_nuts(kernel):
    """The sign θ of x is an ordinary discrete site: stock DiscreteHMCGibbs(NUTS) samples it
    (initialising itself) and agrees, like InverseNUTS, with quadrature."""
    cm = ppinv.condition(signed_root, {"y": 1.0})
    k = DiscreteHMCGibbs(NUTS(cm)) if kernel == "DiscreteHMCGibbs" else InverseNUTS(cm)
    s = run_mcmc(k, num_warmup=300, num_samples=2000).get_samples()
    p_pos, mean_lb, sd_lb = _signed_root_reference()
    pos = (np.asarray(s["x"]) > 0).astype(float)
    assert_mean(pos, p_pos, sd=np.sqrt(p_pos * (1 - p_pos)), what="P(x>0)")
    assert_mean(np.log(np.asarray(s["b"])), mean_lb, sd=sd_lb, what="E[log b]")
    np.testing.assert_allclose(s["x"] ** 2 * s["b"], 1.0, rtol=1e-12)


def test_svi_autonormal():
    """AutoNormal over θ = log a can represent the exact posterior N(log 2 / 2, 1/2).

    The ELBO improves, and the guide's location, averaged over the last half of
    the iterations (Polyak averaging), matches the posterior mean within the
    Monte Carlo error of that average (its ESS from the iterate series).
    """
    cm = ppinv.condition(lognormal_product, {"y": 2.0})
    guide = AutoNormal(cm)
    svi = SVI(cm, guide, numpyro.optim.Adam(0.02), Trace_ELBO(num_particles=4))
    state = svi.init(jax.random.PRNGKey(0))

    def step(state, _):
        state, loss = svi.update(state)
        return state, (loss, svi.get_params(state)["a_auto_loc"])

    n = 2000
    state, (losses, locs) = jax.lax.scan(step, state, None, length=n)
    losses, locs = np.asarray(losses), np.asarray(locs)
    first, last = losses[:100], losses[-500:]
    z = (first.mean() - last.mean()) / np.sqrt(first.var() / len(first) + last.var() / len(last))
    assert z > Z_MAX, (first.mean(), last.mean())
    assert_mean(locs[n // 2 :], LOG_Y / 2, what="guide location of log a")
    # the fitted guide's draws map to points on the constraint
    draws = Predictive(cm, guide=guide, params=svi.get_params(state), num_samples=200,
                       return_sites=["a", "b"])(jax.random.PRNGKey(1))
    np.testing.assert_allclose(draws["a"] * draws["b"], 2.0, rtol=1e-12)


def test_predictive():
    """With posterior θ, Predictive reproduces every deterministic site; without, its draws
    (θ from the reference distributions) are valid points on the constraint. The θ of a·b = y
    is the latent a itself, so the posterior samples hold no site but the model's."""
    cm = ppinv.condition(lognormal_product, {"y": 2.0})
    mcmc = run_mcmc(InverseNUTS(cm), num_warmup=100, num_samples=200)
    samples = mcmc.get_samples()
    theta_sites = list(cm.plan().theta_sites.values())
    theta = {k: samples[k] for k in theta_sites}
    assert theta_sites == ["a"] and set(samples) == {"a", "b"}
    pred = Predictive(cm, posterior_samples=theta)(jax.random.PRNGKey(1))
    np.testing.assert_allclose(pred["b"], samples["b"], rtol=1e-12)

    prior = Predictive(cm, num_samples=300)(jax.random.PRNGKey(2))
    a, b = np.asarray(prior["a"]), np.asarray(prior["b"])
    assert np.all(a > 0) and np.all(b > 0)
    np.testing.assert_allclose(a * b, 2.0, rtol=1e-12)
    assert set(prior) == {"a", "b"}  # the exact observation is data, not a site
    lds = jax.vmap(lambda t: log_density(cm, (), {}, t)[0])({k: prior[k] for k in theta_sites})
    assert np.all(np.isfinite(lds))


# --- ppinv's kernels with MCMC's chain methods --------------------------------------------------
@pytest.mark.parametrize("kernel", [InverseNUTS, pytest.param(InverseHMC, marks=pytest.mark.slow),
                                    pytest.param(InverseMH, marks=pytest.mark.slow)])
@pytest.mark.slow
def test_kernels_with_every_chain_method(kernel, capsys):
    """Sequential (progress bar on), vectorized and parallel chains all sample; sequential
    and vectorized chains are the same chains for the same key; print_summary and ArviZ work."""
    cm = ppinv.condition(signed_root, {"y": 1.0})
    runs = {}
    for method in ("sequential", "vectorized", "parallel"):
        mcmc = MCMC(kernel(cm), num_warmup=60, num_samples=60, num_chains=2, chain_method=method,
                    progress_bar=method == "sequential")
        mcmc.run(jax.random.PRNGKey(3))
        s = mcmc.get_samples(group_by_chain=True)
        assert s["x"].shape == (2, 60) and s["b"].shape == (2, 60)
        np.testing.assert_allclose(s["x"] ** 2 * s["b"], 1.0, rtol=1e-12)
        idata = to_inference_data(mcmc)
        assert set(idata["posterior"].data_vars) == {"x", "b"}  # the model's sites; θ = b is the latent b
        assert idata["posterior"]["x"].shape == (2, 60)
        runs[method] = s
        if method == "sequential":
            capsys.readouterr()  # tqdm's bar, when the environment lets it draw one
        if method == "vectorized":
            mcmc.print_summary()  # the latents x (solved) and b (θ)
            out = capsys.readouterr().out
            assert " b " in out and "r_hat" in out and "theta" not in out
    for site in runs["sequential"]:
        np.testing.assert_allclose(runs["vectorized"][site], runs["sequential"][site], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_repeated_runs_do_not_rebuild_the_plan(monkeypatch):
    """One plan (one trace, one schedule) per argument signature, however often MCMC runs."""
    calls = []
    real = ppinv.conditioning.plan.build_schedule

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ppinv.conditioning.plan, "build_schedule", counting)
    cm = ppinv.condition(linear_with_args, {"y": Y_OBS})
    mcmc = MCMC(InverseNUTS(cm), num_warmup=30, num_samples=30, progress_bar=False)
    a2 = A + 0.25 * jnp.eye(2, 5)
    for key, a in ((0, A), (1, A), (2, a2)):  # new values of the same shape: same plan
        mcmc.run(jax.random.PRNGKey(key), a, OFFSET, scale=1.5)
        x = np.asarray(mcmc.get_samples()["x"])
        np.testing.assert_allclose(x @ np.asarray(a).T + OFFSET, np.broadcast_to(Y_OBS, (30, 2)), atol=1e-10)
    MCMC(NUTS(cm), num_warmup=30, num_samples=30, progress_bar=False).run(jax.random.PRNGKey(3), A, OFFSET, scale=1.5)
    assert len(cm._plans) == 1 and len(calls) == 1
    cm.plan(jnp.ones((2, 6)), OFFSET, scale=1.5)  # another shape: another plan
    assert len(cm._plans) == 2 and len(calls) == 2


# --- scope -------------------------------------------------------------------------------------------
ALPHA_W = np.array([2.0, 3.0, 4.0])


def three_supports():
    """Interval, simplex and positive latents, each under its own exact observation."""
    a = numpyro.sample("a", dist.Beta(2.0, 2.0))
    b = numpyro.sample("b", dist.Beta(2.0, 2.0))
    w = numpyro.sample("w", dist.Dirichlet(jnp.asarray(ALPHA_W)))
    p = numpyro.sample("p", dist.LogNormal(0.0, 1.0))
    q = numpyro.sample("q", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("sum_ab", a + b)
    numpyro.deterministic("w0", w[0])
    numpyro.deterministic("pq", p * q)


@pytest.mark.slow
def test_supports_and_several_observed_sites():
    y_ab, w0, pq = 1.2, 0.3, 2.0
    cm = ppinv.condition(three_supports, {"sum_ab": y_ab, "w0": w0, "pq": pq})
    s = run_mcmc(InverseNUTS(cm), num_warmup=300, num_samples=2000).get_samples()
    # interval: p(a | a + b = y) ∝ Beta(a) Beta(y − a) on (y − 1, 1)
    dens = lambda a: stats.beta.pdf(a, 2, 2) * stats.beta.pdf(y_ab - a, 2, 2)  # noqa: E731
    z = integrate.quad(dens, y_ab - 1, 1)[0]
    m1 = integrate.quad(lambda a: a * dens(a), y_ab - 1, 1)[0] / z
    m2 = integrate.quad(lambda a: a * a * dens(a), y_ab - 1, 1)[0] / z
    assert_mean(s["a"], m1, sd=np.sqrt(m2 - m1**2), what="E[a]")
    np.testing.assert_allclose(s["a"] + s["b"], y_ab, rtol=1e-12)
    # simplex: w[1:] / (1 − w0) | w0 ~ Dirichlet(α[1:]), so w1 / (1 − w0) ~ Beta(3, 4)
    w = np.asarray(s["w"])
    frac = w[:, 1] / (1 - w0)
    bm, bv = stats.beta.mean(3, 4), stats.beta.var(3, 4)
    assert_mean(frac, bm, sd=np.sqrt(bv), what="E[w1 / (1 - w0)]")
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(w[:, 0], w0, rtol=1e-12)
    assert np.all(w > 0)
    # positive: log p | p q = y ~ N(log y / 2, 1/2)
    assert_mean(np.log(s["p"]), np.log(pq) / 2, sd=np.sqrt(0.5), what="E[log p]")
    assert constraint_violation(cm, s) < 1e-12


def vector_sites():
    with numpyro.plate("n", 2):
        x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
    x2 = numpyro.sample("x2", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    x3 = numpyro.sample("x3", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    numpyro.deterministic("total", jnp.sum(x1) + jnp.sum(x2) + jnp.sum(x3))


def test_vector_sites_plate_expand_to_event():
    """Six standard normals (in a plate, expanded, batched) given their sum: mean y/6, var 5/6."""
    y = 3.0
    s = run_mcmc(InverseNUTS(ppinv.condition(vector_sites, {"total": y})), num_samples=1500).get_samples()
    x = np.concatenate([np.asarray(s[k]) for k in ("x1", "x2", "x3")], axis=1)
    assert_mean(x, np.full(6, y / 6), sd=np.sqrt(5 / 6))
    assert_var(x, np.full(6, 5 / 6))
    np.testing.assert_allclose(x.sum(1), y, rtol=1e-12)


A = jnp.array([[1.0, 2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 1.0, 1.0, -2.0]])
OFFSET = jnp.array([0.1, -0.2])
Y_OBS = np.array([1.0, -0.5])  # data as a NumPy array


def linear_with_args(A, offset=0.0, *, scale):
    """Data as model arguments: a positional matrix, a keyword array, a static keyword."""
    x = numpyro.sample("x", dist.Normal(0.0, scale).expand([A.shape[1]]).to_event(1))
    numpyro.deterministic("y", A @ x + offset)


def test_model_arguments():
    """x ~ N(0, s² I) given A x + c = y: mean A⁺(y − c), covariance s² (I − A⁺A)."""
    cm = ppinv.condition(linear_with_args, {"y": Y_OBS})
    s = run_mcmc(InverseNUTS(cm), num_samples=1500, A=A, offset=OFFSET, scale=1.5).get_samples()
    x = np.asarray(s["x"])
    pinv = np.linalg.pinv(np.asarray(A))
    cov = 1.5**2 * (np.eye(5) - pinv @ np.asarray(A))
    assert_mean(x, pinv @ (Y_OBS - np.asarray(OFFSET)), sd=np.sqrt(np.diag(cov)))
    assert_var(x, np.diag(cov))


def linear_two_observations(A):
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
    numpyro.deterministic("y", A @ x)
    numpyro.deterministic("s", x[0] - x[3])


def test_joint_linear_block_with_matrix_argument_under_jit():
    a = jnp.array([[1.0, 2.0, 0.0, 1.0], [0.0, 1.0, 1.0, -1.0]])
    cm = ppinv.condition(linear_two_observations, {"y": jnp.array([1.0, -0.5]), "s": 0.25})
    (site,) = cm.plan(a).theta_sites.values()
    ld = jax.jit(lambda t: log_density(cm, (a,), {}, {site: t})[0])(jnp.zeros(1))
    assert np.isfinite(ld)


def delta_and_likelihood():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Delta(a + b), obs=1.0)  # exact observation, no data key
    numpyro.sample("z", dist.Normal(a, 0.5))  # ordinary likelihood, observed through the data dict


def test_delta_observation_with_ordinary_likelihood():
    """a + b = 1 exactly gives a ~ N(1/2, 1/2); z = 0.3 ~ N(a, 1/4) then gives precision 6, mean 2.2/6."""
    cm = ppinv.condition(delta_and_likelihood, {"z": 0.3})
    s = run_mcmc(InverseNUTS(cm), num_samples=1500).get_samples()
    assert_mean(s["a"], 2.2 / 6, sd=np.sqrt(1 / 6))
    assert_var(s["a"], 1 / 6)
    np.testing.assert_allclose(s["a"] + s["b"], 1.0, rtol=1e-12)


def sine():
    x = numpyro.sample("x", dist.Normal(0.0, 5.0))
    numpyro.deterministic("y", jnp.sin(x))


@pytest.mark.parametrize("kernel", [InverseMH, InverseNUTS])
def test_sine_periods(kernel):
    """y = sin x with a wide prior: the preimages x_k = πk + (−1)^k asin y, k ∈ ℤ, all carry the
    same |∂x/∂y| = 1/√(1 − y²), so P(k | y) ∝ p(x_k) (the co-area formula summed over the
    preimage set). The period θ is moved by the kernels' discrete updates."""
    y = 0.5
    cm = ppinv.condition(sine, {"y": y})
    s = run_mcmc(kernel(cm), num_warmup=300, num_samples=3000).get_samples()
    x = np.asarray(s["x"])
    np.testing.assert_allclose(np.sin(x), y, atol=1e-12)
    ks = np.arange(-20, 21)
    xk = np.pi * ks + (-1.0) ** ks * np.arcsin(y)
    w = stats.norm.pdf(xk, 0.0, 5.0) / np.sqrt(1 - y * y)
    p = w / w.sum()
    k_of = np.rint(x / np.pi).astype(int)  # |asin y| < π/2, so x_k rounds to πk
    np.testing.assert_allclose(np.pi * k_of + (-1.0) ** k_of * np.arcsin(y), x, atol=1e-9)
    assert len(np.unique(k_of)) >= 4, np.unique(k_of)
    # periods with at least 2% mass each (an empty column has no effective sample size)
    keep = p > 0.02
    onehot = (k_of[:, None] == ks[None, keep]).astype(float)
    assert_mean(onehot, p[keep], sd=np.sqrt(p[keep] * (1 - p[keep])), what="P(period k)")
