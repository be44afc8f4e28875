"""Cost in the number of sites (issue 13): a sum observed over N separate scalar sites.

Structure, not time: the programs ppinv builds grow at most linearly in the number of
sites, the start draws all sites of one kind with one sampler, NumPyro's NUTS carries
one vector whatever the number of sites, and ``MCMC.run`` compiles the same number of
programs. The conditional density is checked against the closed form (x_i given
Σx = s, for Gamma(α, 1) latents: x / s ~ Dirichlet(α, …, α)); the sampler against it in
the slow tier.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr
from numpyro import handlers
from numpyro.infer import MCMC
from scipy import stats

import ppinv
from ppinv.infer import InverseHMC, InverseNUTS
from ppinv.infer._args import ModelArgs
from ppinv.infer._start import StartRule, _latent_start, _prior_plan, start_point

ALPHA = 2.0


def gamma_sum(n, alpha=ALPHA):
    def model():
        xs = [numpyro.sample(f"x{i}", dist.Gamma(alpha, 1.0)) for i in range(n)]
        numpyro.deterministic("total", sum(xs))

    return model


def conditioned(n, total=None):
    return ppinv.condition(gamma_sum(n), {"total": ALPHA * n if total is None else total})


def _inner_jaxprs(param):
    if isinstance(param, ClosedJaxpr):
        yield param.jaxpr
    elif isinstance(param, Jaxpr):
        yield param
    elif isinstance(param, (tuple, list)):
        for p in param:
            yield from _inner_jaxprs(p)


def count_eqns(jaxpr, prims=None):
    """Equations of ``jaxpr`` and every jaxpr nested in it (only ``prims`` by name, if given)."""
    total = 0
    for eqn in jaxpr.eqns:
        total += prims is None or eqn.primitive.name in prims
        for p in eqn.params.values():
            for inner in _inner_jaxprs(p):
                total += count_eqns(inner, prims)
    return total


def _programs(n):
    """The jaxprs of the potential, its gradient, the PGF start and the post-processing at n sites."""
    cm = conditioned(n)
    plan = cm.plan()
    target = InverseNUTS(cm).setup(10)
    z = {s: jnp.zeros(()) for s in target.continuous_sites}
    potential = lambda z: target.potential(z, {})  # noqa: E731
    start = lambda key: start_point(cm, plan, StartRule(), key, 0, (), {}, 8)  # noqa: E731
    return {
        "potential": jax.make_jaxpr(potential)(z).jaxpr,
        "gradient": jax.make_jaxpr(jax.grad(potential))(z).jaxpr,
        "start": jax.make_jaxpr(start)(jax.random.PRNGKey(0)).jaxpr,
        "postprocess": jax.make_jaxpr(target.postprocess_fn())(z).jaxpr,
    }


def test_programs_grow_at_most_linearly_in_sites():
    small, large = _programs(20), _programs(40)
    for name in small:
        ratio = count_eqns(large[name]) / count_eqns(small[name])
        assert ratio <= 2.2, f"{name}: {count_eqns(small[name])} -> {count_eqns(large[name])} equations"


def _prior_of(cm):
    plan = cm.plan()
    return plan, _prior_plan(handlers.condition(cm.model, data=plan.sample_data), plan, (), {})


def test_start_draws_sites_of_one_kind_with_one_sampler():
    """One Gamma sampler (a rejection loop) per group of sites and one loop of key splits,
    not one of each per site."""
    for prims in ({"random_gamma"}, {"random_split"}):
        counts = [count_eqns(_programs(n)["start"], prims) for n in (5, 20)]
        assert counts[0] == counts[1] > 0, prims
    _, prior = _prior_of(conditioned(20))
    assert prior.levels == [[(tuple(f"x{i}" for i in range(20)), ())]] and prior.chain_length == 20


def hierarchical():
    mu = numpyro.sample("mu", dist.Normal(1.0, 1.0))
    s = numpyro.sample("s", dist.LogNormal(0.0, 0.5))
    xs = [numpyro.sample(f"x{i}", dist.Normal(mu, s)) for i in range(3)]
    with numpyro.plate("p", 2):
        w = numpyro.sample("w", dist.Exponential(2.0))
    g = [numpyro.sample(f"g{i}", dist.LogNormal(0.1 * i, 1.0)) for i in range(2)]
    numpyro.deterministic("total", sum(xs) + sum(g) + w.sum())


def test_batched_prior_draws_are_the_seeded_model_s_draws():
    """Sites are grouped by level (what their distributions are computed from) and kind; each
    is drawn with the key a seeded run gives it, so the draws are the seeded model's."""
    cm = ppinv.condition(hierarchical, {"total": 10.0})
    plan, prior = _prior_of(cm)
    assert prior.levels == [[(("mu",), ()), (("s", "g0", "g1"), ()), (("w",), ())], [(("x0", "x1", "x2"), ())]]
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    got = jax.jit(jax.vmap(lambda k: _latent_start(cm, plan, None, k, (), {})))(keys)
    seeded = jax.jit(jax.vmap(lambda k: {n: s["value"] for n, s in handlers.trace(handlers.seed(cm.model, k))
                                         .get_trace().items() if s["type"] == "sample"}))(keys)
    for n in plan.latents:
        np.testing.assert_allclose(got[n], seeded[n], rtol=1e-12, atol=1e-12)


def test_nuts_moves_one_vector_whatever_the_number_of_sites():
    def state_of(n, **kw):
        kernel = InverseNUTS(conditioned(n), **kw)
        progs = kernel._programs_for(5, ModelArgs((), {}))
        return jax.eval_shape(lambda key: progs.start_one(key, 0, ())[0], jax.random.PRNGKey(0))

    small, large = state_of(4), state_of(12)
    assert small.hmc_state.z.shape == (3,) and large.hmc_state.z.shape == (11,)  # N − 1 free coordinates
    assert len(jax.tree_util.tree_leaves(small.hmc_state)) == len(jax.tree_util.tree_leaves(large.hmc_state))
    # several dense blocks need the sites apart: NumPyro then moves the dict of sites
    blocks = state_of(4, dense_mass=[("x0", "x1"), ("x2",)])
    assert set(blocks.hmc_state.z) == {"x0", "x1", "x2"}


def _compiles_of_run(n):
    count = [0]

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.clear_caches()  # count this run's programs, not those an earlier run left compiled
    kernel = InverseHMC(conditioned(n), num_steps=1, trajectory_length=None, init_tries=8)
    mcmc = MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        mcmc.run(jax.random.PRNGKey(0))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    s = mcmc.get_samples()
    np.testing.assert_allclose(sum(s[f"x{i}"] for i in range(n)), ALPHA * n, rtol=1e-12)
    return count[0]


@pytest.mark.slow  # two cold MCMC.run (about 10 s on a loaded 2-core machine)
def test_mcmc_run_compiles_as_many_programs_for_more_sites():
    assert _compiles_of_run(2) == _compiles_of_run(5)


def test_conditional_density_is_the_dirichlet_of_the_fractions():
    """log density of the conditioned model at θ = the Dirichlet density of x / s, up to a constant."""
    n, total = 6, 5.0
    cm = conditioned(n, total)
    target = InverseNUTS(cm).setup(10)
    potential = jax.jit(lambda z: target.potential(z, {}))
    rng = np.random.default_rng(0)
    got, want = [], []
    for _ in range(5):
        x = rng.dirichlet(np.full(n, ALPHA)) * total
        values = {s: jnp.asarray(x[int(s[1:])]) for s in target.continuous_sites}
        # the potential is over unconstrained θ (log x): its Jacobian Π x_i (i < n) is part of it
        log_jac = sum(np.log(x[int(s[1:])]) for s in target.continuous_sites)
        got.append(-float(potential(target.unconstrain(values))) - log_jac)
        want.append(stats.dirichlet.logpdf(x / total, np.full(n, ALPHA)))
    got, want = np.array(got), np.array(want)
    np.testing.assert_allclose(got - got[0], want - want[0], atol=1e-10)


@pytest.mark.slow
def test_posterior_fractions_are_beta():
    """x_i / s ~ Beta(α, (N − 1)α) for a freed site and for the solved one, with NUTS."""
    n, total = 12, 30.0
    mcmc = MCMC(InverseNUTS(conditioned(n, total)), num_warmup=300, num_samples=600, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1))
    s = mcmc.get_samples()
    beta = stats.beta(ALPHA, (n - 1) * ALPHA)
    for site in ("x0", f"x{n - 1}"):
        f = np.asarray(s[site]) / total
        ess = float(numpyro.diagnostics.effective_sample_size(f[None]))
        assert ess > 50
        assert abs(f.mean() - beta.mean()) < 4 * beta.std() / np.sqrt(ess)
        assert abs(np.quantile(f, 0.9) - beta.ppf(0.9)) < 5 * beta.std() / np.sqrt(ess)
