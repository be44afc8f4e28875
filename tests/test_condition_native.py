"""A conditioned model reads like a hand-written NumPyro model to every NumPyro and ArviZ tool.

* params are inputs of the inverse, read at every call (``handlers.substitute``, SVI);
* θ's density sits on the θ sites: the likelihood (``log_likelihood``, LOO, WAIC,
  ``get_model_relations``) is the model's own noisy observations, and the potential
  energy is the exact conditional it always was;
* samples, summaries and ``Predictive`` show the model's sites, θ only when asked for;
* ``ppinv.condition`` nests, ``handlers.condition`` on a latent conditions it;
* data errors are raised by ``condition()`` and name the site.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.inspect import get_model_relations
from numpyro.infer.util import log_density, log_likelihood, potential_energy
from scipy import optimize, stats

import ppinv
from ppinv.diagnostics import constraint_violation
from ppinv.infer import InverseNUTS

from .helpers import assert_mean, assert_var, run_mcmc


# --- params --------------------------------------------------------------------------------
Y_P, Z_P, S_P = 3.0, 1.0, 0.2


def with_param():
    """y = w·a + b observed exactly; z ~ N(a, 0.2) an ordinary observation; w a param."""
    w = numpyro.param("w", 0.5)
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", w * a + b)
    numpyro.sample("z", dist.Normal(a, S_P), obs=Z_P)


def test_param_substituted_is_the_param_inverted():
    cm = ppinv.condition(with_param, {"y": Y_P})
    for w in (0.5, 3.0, -2.0):
        model = handlers.substitute(cm, {"w": w}) if w != 0.5 else cm
        tr = handlers.trace(handlers.seed(model, 1)).get_trace()
        a, b = tr["a"]["value"], tr["b"]["value"]
        np.testing.assert_allclose(w * a + b, Y_P, rtol=1e-12)
        assert tr["w"]["value"] == w
    draws = {"a": jnp.array([0.3, -1.2]), "b": Y_P - 3.0 * jnp.array([0.3, -1.2])}  # on the w = 3 constraint
    assert constraint_violation(cm, draws, params={"w": 3.0}) < 1e-12
    with handlers.substitute(data={"w": 3.0}):
        assert constraint_violation(cm, draws) < 1e-12
    # at the initial value the same draws are far from the constraint, and the figure says so
    np.testing.assert_allclose(constraint_violation(cm, draws), np.max(np.abs(0.5 * draws["a"] + draws["b"] - Y_P)))


def test_param_learned_by_svi_is_the_param_the_draws_satisfy():
    """SVI with an AutoNormal guide on the conditioned model maximises the exact evidence
    p(y, z | w) (the posterior of a is Gaussian, so the guide is exact): the learned w is the
    maximiser found by quadrature-free closed form, and draws satisfy w_learned·a + b = y."""

    def neg_log_evidence(w):
        cov = np.array([[w * w + 1.0, w], [w, 1.0 + S_P**2]])  # (y, z) = (w a + b, a + ε)
        return -stats.multivariate_normal.logpdf([Y_P, Z_P], cov=cov)

    w_star = optimize.minimize_scalar(neg_log_evidence, bounds=(-10, 10), method="bounded").x
    cm = ppinv.condition(with_param, {"y": Y_P})
    guide = AutoNormal(cm)
    svi = SVI(cm, guide, numpyro.optim.Adam(0.05), Trace_ELBO(num_particles=4))
    state = svi.init(jax.random.PRNGKey(0))

    def step(state, _):
        state, _ = svi.update(state)
        return state, svi.get_params(state)["w"]

    state, ws = jax.lax.scan(step, state, None, length=1200)
    w_learned = float(np.mean(ws[-400:]))  # Polyak average of the iterates
    assert abs(w_learned - w_star) < 0.06, (w_learned, w_star)
    params = {**svi.get_params(state), "w": jnp.asarray(w_learned)}
    draws = Predictive(cm, guide=guide, params=params, num_samples=100, return_sites=["a", "b"])(
        jax.random.PRNGKey(1)
    )
    np.testing.assert_allclose(w_learned * draws["a"] + draws["b"], Y_P, rtol=1e-12)
    assert constraint_violation(cm, draws, params=params) < 1e-12
    assert constraint_violation(cm, draws) > 1.0  # the initial w = 0.5 gives another constraint


# --- the likelihood is the model's noisy observations ------------------------------------------
Z_OBS = jnp.array([0.3, 0.9, -0.2, 0.5, 1.1, 0.1, 0.4, 0.8])


def sum_and_noise(z):
    """a + b = 1 exactly; z_i ~ N(a, 1) noisy observations."""
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("s", a + b)
    with numpyro.plate("n", z.shape[0]):
        numpyro.sample("z", dist.Normal(a, 1.0), obs=z)


def hand_written(z):
    """The same posterior written by hand: a | a + b = 1 ~ N(1/2, 1/2), b = 1 − a."""
    a = numpyro.sample("a", dist.Normal(0.5, np.sqrt(0.5)))
    numpyro.deterministic("b", 1.0 - a)
    with numpyro.plate("n", z.shape[0]):
        numpyro.sample("z", dist.Normal(a, 1.0), obs=z)


@pytest.fixture(scope="module")
def noisy_run():
    cm = ppinv.condition(sum_and_noise, {"s": 1.0})
    return cm, run_mcmc(InverseNUTS(cm), num_warmup=200, num_samples=300, num_chains=2, chain_method="vectorized",
                        args=(Z_OBS,))


def test_log_likelihood_and_relations_are_the_models_observations(noisy_run):
    cm, mcmc = noisy_run
    s = mcmc.get_samples()
    ll = log_likelihood(cm, s, Z_OBS)
    assert set(ll) == {"z"}
    reference = log_likelihood(sum_and_noise, {"a": s["a"], "b": s["b"]}, Z_OBS)  # the original model
    np.testing.assert_allclose(ll["z"], reference["z"], rtol=1e-12)
    relations = get_model_relations(cm, model_args=(Z_OBS,))
    assert relations["observed"] == ["z"]
    assert not any(name.startswith("_") for name in relations["sample_sample"])
    # the posterior is the exact one: a ~ N(1/2, 1/2) prior times the Gaussian likelihood
    prec = 2.0 + len(Z_OBS)
    a = np.asarray(mcmc.get_samples(group_by_chain=True)["a"])
    assert_mean(a, (1.0 + float(jnp.sum(Z_OBS))) / prec, sd=np.sqrt(1 / prec), chains=True)
    np.testing.assert_allclose(s["a"] + s["b"], 1.0, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::UserWarning")  # ArviZ's Pareto-k/variance notes on 8 points
def test_loo_and_waic_agree_with_the_hand_written_model(noisy_run):
    """az.loo / az.waic of az.from_numpyro(mcmc) equal the same computation on the equivalent
    hand-written model at the same posterior draws (LOO over the noisy observations z; the exact
    observation is a constraint, not a point to leave out)."""
    cm, mcmc = noisy_run
    idata = az.from_numpyro(mcmc)
    assert list(idata.log_likelihood.data_vars) == ["z"]
    draws = mcmc.get_samples(group_by_chain=True)
    flat = {"a": draws["a"].reshape(-1)}
    ll_hand = log_likelihood(hand_written, flat, Z_OBS)["z"].reshape(2, 300, -1)
    hand = az.from_dict(posterior={"a": np.asarray(draws["a"])}, log_likelihood={"z": np.asarray(ll_hand)})
    for stat in (az.loo, az.waic):
        ours, theirs = stat(idata), stat(hand)
        for field in ("elpd_loo", "elpd_waic", "p_loo", "p_waic", "se"):
            if field in ours:
                np.testing.assert_allclose(float(ours[field]), float(theirs[field]), rtol=1e-10)


def several_theta():
    """θ of four kinds: a latent (positive), a null-space coordinate, a positive latent with a
    sign; an untouched latent mu and a noisy observation z."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    a = numpyro.sample("a", dist.LogNormal(mu, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    c = numpyro.sample("c", dist.Normal(0.5, 1.0))
    d = numpyro.sample("d", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("y1", a * b)
    numpyro.deterministic("y2", jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]]) @ x)
    numpyro.deterministic("y3", c * c * d)
    numpyro.sample("z", dist.Normal(mu + x[0], 1.0), obs=0.7)


SEVERAL_DATA = {"y1": 2.0, "y2": jnp.array([1.0, -0.5]), "y3": 1.5}


def test_potential_energy_is_the_exact_conditional():
    """What NUTS sees is unchanged: at several θ the potential energy is
    −[log p(x(θ), mu, z) + log|det ∂x/∂(y, θ)|] − Σ log|J| of θ's unconstraining transforms."""
    cm = ppinv.condition(several_theta, SEVERAL_DATA)
    plan = cm.plan()
    assert any(s.discrete for s in plan.schedule.theta.values())
    assert plan.latent_theta and len(plan.extra_theta_sites) >= 2, plan.theta_sites
    rng = np.random.default_rng(3)
    for i in range(4):
        theta, z = {}, {}
        for n, spec in plan.schedule.theta.items():
            if spec.discrete:
                theta[n] = jnp.full(spec.shape, i % 2, spec.dtype)
            else:
                z[plan.theta_sites[n]] = jnp.asarray(rng.normal(size=spec.shape))
                theta[n] = biject_to(spec.support)(z[plan.theta_sites[n]])
        z["mu"] = jnp.asarray(rng.normal())
        disc = {plan.theta_sites[n]: v for n, v in theta.items() if plan.schedule.theta[n].discrete}
        pe = potential_energy(handlers.condition(cm, disc), (), {}, z)
        x, log_det, ok = plan.invert([], theta)
        assert bool(ok)
        log_joint, _ = log_density(several_theta, (), {}, {**x, "mu": z["mu"]})
        log_jac = sum(
            biject_to(spec.support).log_abs_det_jacobian(z[plan.theta_sites[n]], theta[n]).sum()
            for n, spec in plan.schedule.theta.items()
            if not spec.discrete
        )
        np.testing.assert_allclose(pe, -(log_joint + log_det + log_jac), rtol=1e-12)


def exp_of_shifted():
    """y = exp(a) fixes a: no θ is left, and the exact observation is a likelihood for mu."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    a = numpyro.sample("a", dist.Normal(mu, 1.0))
    numpyro.deterministic("y", jnp.exp(a))


def test_observations_that_fix_the_latents_are_their_likelihood():
    cm = ppinv.condition(exp_of_shifted, {"y": 2.0})
    mus = jnp.array([-0.3, 0.0, 0.8])
    ll = log_likelihood(cm, {"mu": mus})
    exact = stats.norm.logpdf(np.log(2.0), np.asarray(mus), 1.0) - np.log(2.0)  # p(y | mu) = p(a = log y) / y
    assert set(ll) == {"y"}
    np.testing.assert_allclose(ll["y"], exact, rtol=1e-12)
    assert get_model_relations(cm)["observed"] == ["y"]


# --- what samples, summaries and Predictive show ------------------------------------------------
def signed_root():
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("y", x * x * b)
    numpyro.deterministic("x_abs", jnp.abs(x))


def test_samples_and_summaries_show_the_models_sites(capsys):
    cm = ppinv.condition(signed_root, {"y": 1.0})
    mcmc = MCMC(InverseNUTS(cm), num_warmup=100, num_samples=100, num_chains=2, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1))
    s = mcmc.get_samples()
    assert set(s) == {"x", "b", "x_abs"}  # latents and the model's own deterministic; no θ, no y
    summary = az.summary(az.from_numpyro(mcmc))
    assert sorted(summary.index) == ["b", "x", "x_abs"]
    assert np.all(np.isfinite(summary["r_hat"]))
    mcmc.print_summary()
    out = capsys.readouterr().out
    rows = {line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith("Number")}
    assert rows == {"b", "x"}, out  # the model's latents, solved or not; not its deterministic x_abs
    # the sampler's coordinates on request
    theta = cm.theta_of(s)
    assert set(theta) == set(cm.plan().theta_sites.values())
    np.testing.assert_allclose(theta["b"], s["b"], rtol=1e-12)
    x, _, ok = jax.vmap(lambda t: cm.plan().invert([], t))({n: theta[site] for n, site in
                                                            cm.plan().theta_sites.items()})
    assert np.all(ok)
    np.testing.assert_allclose(x["x"], s["x"], rtol=1e-12)


def test_stock_nuts_samples_have_no_repeated_sites():
    def product():
        a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
        b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
        numpyro.deterministic("y", a * b)

    s = run_mcmc(NUTS(ppinv.condition(product, {"y": 2.0})), num_warmup=100, num_samples=100).get_samples()
    assert set(s) == {"a", "b"}
    np.testing.assert_allclose(s["a"] * s["b"], 2.0, rtol=1e-12)


A2 = jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])


def linear():
    """A x = y: θ is a null-space coordinate, no site of the model."""
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    numpyro.deterministic("y", A2 @ x)
    numpyro.deterministic("norm2", jnp.sum(x**2))


def test_predictive_from_the_models_sites():
    """ppinv's kernels return x (no θ); Predictive given those samples sets θ from the PGF and
    reproduces every site. Without samples, its draws are on the constraint."""
    cm = ppinv.condition(linear, {"y": jnp.array([1.0, -0.5])})
    s = run_mcmc(InverseNUTS(cm), num_warmup=100, num_samples=150).get_samples()
    assert set(s) == {"x", "norm2"}
    pred = Predictive(cm, posterior_samples=s)(jax.random.PRNGKey(1))
    np.testing.assert_allclose(pred["x"], s["x"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pred["norm2"], s["norm2"], rtol=1e-10)
    prior = Predictive(cm, num_samples=50)(jax.random.PRNGKey(2))
    assert all(np.size(v) > 0 for v in prior.values()), {k: np.shape(v) for k, v in prior.items()}
    np.testing.assert_allclose(prior["x"] @ np.asarray(A2).T, np.broadcast_to([1.0, -0.5], (50, 2)), atol=1e-12)


# --- nesting ----------------------------------------------------------------------------------
def three():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a + b + c)
    numpyro.deterministic("d", a - b)


def _log_densities(cm, ref, points):
    sites = list(ref.plan().theta_sites.values())
    ours = [log_density(cm, (), {}, {k: jnp.asarray(p) for k in sites})[0] for p in points]
    theirs = [log_density(ref, (), {}, {k: jnp.asarray(p) for k in sites})[0] for p in points]
    return np.array(ours), np.array(theirs)


def test_nested_condition_merges_the_data():
    nested = ppinv.condition(ppinv.condition(three, {"y": 1.0}), {"d": 0.3})
    both = ppinv.condition(three, {"y": 1.0, "d": 0.3})
    assert nested.data == both.data
    ours, theirs = _log_densities(nested, both, [0.1, -0.4, 1.3])
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    with pytest.raises(ppinv.ConditionError, match="already conditioned"):
        ppinv.condition(ppinv.condition(three, {"y": 1.0}), {"y": 2.0})


def test_numpyro_condition_on_a_latent_conditions_it():
    """handlers.condition on a solved latent (c) or a freed one (a) of a conditioned model is the
    model conditioned on it as well; on the exact site, it is the new observed value."""
    cm = ppinv.condition(three, {"y": 1.0})
    for latent, value in (("c", 0.2), ("a", -0.4)):
        ref = ppinv.condition(three, {"y": 1.0, latent: value})
        ours, theirs = _log_densities(handlers.condition(cm, {latent: value}), ref, [0.1, -0.7])
        np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    s = run_mcmc(NUTS(handlers.condition(cm, {"c": 0.2})), num_warmup=200, num_samples=1000).get_samples()
    np.testing.assert_allclose(s["a"] + s["b"], 0.8, rtol=1e-12)
    assert_mean(s["a"], 0.4, sd=np.sqrt(0.5))  # a | a + b = 0.8 ~ N(0.4, 1/2)
    assert_var(s["a"], 0.5)
    tr = handlers.trace(handlers.seed(handlers.condition(cm, {"y": 3.0}), 0)).get_trace()
    np.testing.assert_allclose(tr["a"]["value"] + tr["b"]["value"] + tr["c"]["value"], 3.0, rtol=1e-12)
    # a traced value is read at every call, not baked in
    site = ppinv.condition(three, {"y": 1.0, "c": 0.2}).plan().theta_sites["a"]
    ld = jax.jit(lambda c: log_density(handlers.condition(cm, {"c": c}), (), {}, {site: 0.1})[0])
    for c in (0.2, 0.5):
        ref = log_density(ppinv.condition(three, {"y": 1.0, "c": c}), (), {}, {site: 0.1})[0]
        np.testing.assert_allclose(ld(c), ref, rtol=1e-14)



def test_outside_handlers_nest_as_in_numpyro():
    """Two ``handlers.condition`` around a conditioned model: the outermost value wins, as
    NumPyro resolves it for a plain model; reading them records no site and draws no key."""
    cm = ppinv.condition(three, {"y": 1.0})
    inner_then_outer = handlers.condition(handlers.condition(cm, {"c": 0.5}), {"c": 0.2})
    ref = ppinv.condition(three, {"y": 1.0, "c": 0.2})
    ours, theirs = _log_densities(inner_then_outer, ref, [0.1, -0.7])
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    plain = handlers.condition(handlers.condition(three, {"c": 0.5}), {"c": 0.2})
    assert float(handlers.trace(handlers.seed(plain, 0)).get_trace()["c"]["value"]) == 0.2
    # asking the handlers neither enters the caller's trace nor advances its seed
    from ppinv.conditioning.outside import _outside_stack
    seeded = handlers.seed(rng_seed=3)
    with handlers.trace() as tr, seeded, handlers.condition(data={"c": 0.2}):
        key = seeded.rng_key
        assert _outside_stack() == [("condition", {"c": 0.2})]
        assert seeded.rng_key is key
    assert tr == {}

# --- data errors at condition() time -------------------------------------------------------------
def sum_and_rate():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a + b)
    numpyro.sample("r", dist.Exponential(1.0))


def sum_and_rate_with_args(scale):
    a = numpyro.sample("a", dist.Normal(0.0, scale))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a + b)
    numpyro.sample("r", dist.Exponential(1.0))


@pytest.mark.parametrize(
    "data, fragments",
    [
        ({"y": 1.0, "r": -1.0}, ["data['r']", "outside the support", "sample site 'r'"]),
        ({"y": 1.0, "r": jnp.ones(3)}, ["data['r']", "shape (3,)", "sample site 'r'"]),
        ({"y": jnp.ones(2)}, ["data['y']", "shape (2,)"]),
        ({"y": 1.0, "rr": 2.0}, ["'rr'", "did you mean 'r'"]),
    ],
)
def test_data_errors_are_raised_by_condition_and_name_the_site(data, fragments):
    with pytest.raises(ppinv.ConditionError) as info:
        ppinv.condition(sum_and_rate, data)
    msg = str(info.value)
    assert all(f.lower() in msg.lower() for f in fragments), msg


def test_data_errors_of_models_with_arguments_at_plan_time():
    cm = ppinv.condition(sum_and_rate_with_args, {"y": 1.0, "r": -1.0})  # no arguments yet: nothing to trace
    with pytest.raises(ppinv.ConditionError, match="sample site 'r'"):
        cm.plan(1.0)
