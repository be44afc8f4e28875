"""ppinv's kernels take NumPyro's own arguments, with NumPyro's meaning; starts are the best of N.

* InverseNUTS / InverseHMC accept every argument of numpyro.infer.NUTS / HMC
  (checked against their real signatures) and each one does what it does in
  NumPyro: a tree depth bounds the leapfrog steps, a fixed step size stays
  fixed, a dense mass matrix is dense, forward-mode differentiation runs a
  model reverse mode cannot, init_strategy sets the start;
* the start of a chain is the try of highest log density among init_tries
  PGF starts (reconstructed here from prior draws independently), and chains
  are dealt out over the discrete branches, skipping a branch of negligible mass.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax
from numpyro import handlers
from numpyro.infer import HMC, MCMC, NUTS
from numpyro.infer.hmc_util import euclidean_kinetic_energy
from numpyro.infer.initialization import init_to_mean, init_to_median, init_to_uniform, init_to_value
from numpyro.infer.util import log_density

import ppinv
from models import bilinear
from ppinv.infer import InverseHMC, InverseMH, InverseNUTS, pgf_initial_values
from ppinv.infer._start import BRANCH_LOG_DENSITY_GAP, pick_start


# --- the signatures -----------------------------------------------------------------------------
@pytest.mark.parametrize("ours,theirs", [(InverseNUTS, NUTS), (InverseHMC, HMC)], ids=["NUTS", "HMC"])
def test_every_numpyro_argument_is_accepted_with_its_default(ours, theirs):
    mine = inspect.signature(ours.__init__).parameters
    for name, p in inspect.signature(theirs.__init__).parameters.items():
        assert name in mine, name
        if name != "init_strategy":  # ppinv's default start: prior draws through the PGF
            assert mine[name].default == p.default, name
    extra = set(mine) - set(inspect.signature(theirs.__init__).parameters)
    assert extra == {"jump_every", "init_tries", "branch_jumps"}


def test_hmc_rejects_what_numpyro_hmc_rejects():
    cm = bilinear.conditioned()
    with pytest.raises(TypeError, match="max_tree_depth"):
        InverseHMC(cm, max_tree_depth=3)
    with pytest.raises(ValueError, match="num_steps"):
        InverseHMC(cm, num_steps=None, trajectory_length=None)
    with pytest.raises(ValueError, match="potential_fn"):
        InverseNUTS(cm, potential_fn=lambda z: 0.0)


def _run(kernel, num_warmup=30, num_samples=30, **kw):
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, progress_bar=False, **kw)
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("num_steps", "adapt_state.step_size"))
    return mcmc


# --- what the arguments do ----------------------------------------------------------------------
def test_nuts_arguments_have_numpyro_meaning():
    """Tree depth, fixed step size, dense mass, a custom kinetic energy and the other flags, together."""
    calls = []

    def kinetic(inverse_mass_matrix, r):
        calls.append(1)
        return euclidean_kinetic_energy(inverse_mass_matrix, r)

    kernel = InverseNUTS(
        bilinear.conditioned(), None, kinetic, step_size=0.3, adapt_step_size=False, dense_mass=True,
        target_accept_prob=0.9, trajectory_length=None, max_tree_depth=2, find_heuristic_step_size=True,
        forward_mode_differentiation=True, regularize_mass_matrix=False,
    )
    mcmc = _run(kernel)
    extra = mcmc.get_extra_fields()
    assert calls  # the kinetic energy given is the one used
    assert np.all(np.asarray(extra["num_steps"]) <= 2**2 - 1)  # max_tree_depth=2: at most 3 leapfrog steps
    np.testing.assert_allclose(np.asarray(extra["adapt_state.step_size"]), 0.3)  # not adapted
    mass = mcmc.last_state.hmc_state.adapt_state.inverse_mass_matrix  # over the flat vector of the sites
    assert mass.shape == (2, 2)  # dense over both θ
    s = mcmc.get_samples()
    np.testing.assert_allclose(s["x0"] + s["x1"] * s["x2"], 1.0, atol=1e-12)


def test_hmc_fixed_steps_and_given_mass_matrix():
    cm = bilinear.conditioned()
    sites = tuple(sorted(InverseHMC(cm).setup(10).continuous_sites))
    given = {sites: jnp.diag(jnp.array([0.5, 2.0]))}
    kernel = InverseHMC(cm, num_steps=4, trajectory_length=None, inverse_mass_matrix=given,
                        adapt_mass_matrix=False, dense_mass=True)
    mcmc = _run(kernel)
    assert np.all(np.asarray(mcmc.get_extra_fields()["num_steps"]) == 4)
    np.testing.assert_array_equal(mcmc.last_state.hmc_state.adapt_state.inverse_mass_matrix, given[sites])


def _square_with_while_loop(x):
    """x² through a while loop (reverse-mode differentiation of while_loop is not defined)."""
    return lax.while_loop(lambda c: c[0] < 1, lambda c: (c[0] + 1, c[1] * x), (0, x))[1]


def while_loop_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.factor("extra", -0.5 * _square_with_while_loop(c))
    numpyro.deterministic("y", a + b)


@pytest.mark.slow
def test_forward_mode_differentiation_is_passed_on():
    cm = ppinv.condition(while_loop_model, {"y": 1.0})
    with pytest.raises(ValueError, match="[Rr]everse-mode differentiation"):
        InverseNUTS(cm).init(jax.random.PRNGKey(0), 5, None, (), {})
    s = _run(InverseNUTS(cm, forward_mode_differentiation=True), num_warmup=10, num_samples=10).get_samples()
    np.testing.assert_allclose(s["a"] + s["b"], 1.0, atol=1e-12)



def signed_square_with_while_loop():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.factor("extra", -0.5 * _square_with_while_loop(c))
    numpyro.deterministic("y", a * a)


@pytest.mark.slow
def test_forward_mode_differentiation_refreshes_the_potential_after_a_branch_move():
    """The sign of a in y = a² is a discrete θ: after its move the potential and gradient are
    recomputed, by forward mode as asked (the factor's while_loop has no reverse mode)."""
    cm = ppinv.condition(signed_square_with_while_loop, {"y": 2.0})
    s = _run(InverseNUTS(cm, forward_mode_differentiation=True), num_warmup=20, num_samples=200).get_samples()
    np.testing.assert_allclose(s["a"] ** 2, 2.0, rtol=1e-12)
    assert 0.2 < float(np.mean(s["a"] > 0)) < 0.8

# --- init_strategy ---------------------------------------------------------------------------------
def _start(kernel, key=0):
    """Constrained start values of one chain (model sites and θ) from the kernel's own init."""
    state = kernel.init(jax.random.PRNGKey(key), 10, None, (), {})
    return kernel.postprocess_fn((), {})(state.z)


def test_init_to_value_on_latents_and_init_to_mean():
    """Latent values given: θ = pgf(values); the latent the observation determines is solved."""
    cm = bilinear.conditioned()
    start = _start(InverseNUTS(cm, init_strategy=init_to_value(values={"x0": 5.0, "x1": 0.3, "x2": -0.7})))
    np.testing.assert_allclose([start["x1"], start["x2"]], [0.3, -0.7], rtol=1e-12)
    np.testing.assert_allclose(start["x0"], 1.0 + 0.3 * 0.7, rtol=1e-12)  # solved, not 5.0
    mean = _start(InverseNUTS(cm, init_strategy=init_to_mean))
    np.testing.assert_allclose([mean["x0"], mean["x1"], mean["x2"]], [1.0, 0.0, 0.0], atol=1e-12)


def signed_square():
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    numpyro.deterministic("y", x * x)


def test_init_to_value_on_a_theta_site():
    """A θ site (here the sign of x in x² = 1) can be fixed by name."""
    cm = ppinv.condition(signed_square, {"y": 1.0})
    plan = cm.plan()
    (name, site), = plan.theta_sites.items()
    theta_neg = plan.pgf([], {"x": jnp.asarray(-1.0)})[name]
    start = _start(InverseMH(cm, init_strategy=init_to_value(values={site: theta_neg})))
    np.testing.assert_allclose(start["x"], -1.0, rtol=1e-12)
    for strategy in (init_to_median, init_to_uniform):  # valid starts on the constraint set
        np.testing.assert_allclose(abs(_start(InverseMH(cm, init_strategy=strategy))["x"]), 1.0, rtol=1e-12)


def product():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def test_an_invalid_init_value_is_blamed_on_the_strategy():
    """a·b = 1 from a = b = 0: whichever is θ is 0, and the other would be 1/0."""
    cm = ppinv.condition(product, {"y": 1.0})
    kernel = InverseNUTS(cm, init_strategy=init_to_value(values={"a": 0.0, "b": 0.0}), init_tries=4)
    with pytest.raises(ppinv.ConditionError, match="init_strategy=init_to_value"):
        kernel.init(jax.random.PRNGKey(0), 10, None, (), {})


# --- the best of N --------------------------------------------------------------------------------
def _tries_by_hand(cm, key, n):
    """The tries as the docs describe them: prior draw x, θ = pgf(x), log density of the conditioned model."""
    plan = cm.plan()
    out = []
    for k in jax.random.split(key, n):
        tr = handlers.trace(handlers.seed(cm.model, k)).get_trace()
        theta = plan.pgf([], {n_: tr[n_]["value"] for n_ in plan.latents})
        values = {plan.theta_sites[t]: v for t, v in theta.items()}
        values.update({u: tr[u]["value"] for u in plan.untouched})
        out.append((values, float(log_density(cm, (), {}, values)[0])))
    return out


def test_start_is_the_try_of_highest_log_density():
    cm = bilinear.conditioned()
    key = jax.random.PRNGKey(7)
    tries = _tries_by_hand(cm, key, 16)
    lds = np.array([ld for _, ld in tries])
    start = pgf_initial_values(cm, key, num_tries=16)
    best_values, best_ld = tries[int(np.argmax(lds))]
    assert lds.max() > lds[0]  # the first try is not the best: the choice matters here
    np.testing.assert_allclose(float(log_density(cm, (), {}, start)[0]), best_ld, rtol=1e-10)
    for site, v in best_values.items():
        np.testing.assert_allclose(start[site], v, rtol=1e-10)


def test_pick_start_deals_branches_best_first():
    lds = jnp.array([-1.0, -3.0, -2.0, -jnp.inf, -0.5, -40.0])
    branches = jnp.array([[0], [1], [1], [2], [0], [3]])
    # branches by best try: 0 (try 4, −0.5), 1 (try 2, −2.0); 2 has no valid try; 3 is negligible
    assert -40.0 < -0.5 - BRANCH_LOG_DENSITY_GAP
    picks = [int(pick_start(lds, branches, i)) for i in range(5)]
    assert picks == [4, 2, 4, 2, 4]
    assert int(pick_start(lds, None, 3)) == 4  # no discrete θ: the best try for every chain


def test_chains_are_spread_over_the_branches():
    """x ~ N(0.5, 1), x² = 1: both roots carry mass (e¹ : 1); chains alternate, best root first."""
    cm = ppinv.condition(signed_square, {"y": 1.0})
    kernel = InverseNUTS(cm)
    state = kernel.init(jax.random.split(jax.random.PRNGKey(0), 4), 10, None, (), {})
    x = jax.vmap(kernel.postprocess_fn((), {}))(state.z)["x"]
    np.testing.assert_allclose(np.asarray(x), [1.0, -1.0, 1.0, -1.0], rtol=1e-12)
    # sequential chains are numbered in the order their keys are first seen; a key seen before
    # gets its number again, so a repeated run starts where it started before
    seq = InverseNUTS(cm)
    firsts = [float(_start(seq, key)["x"]) for key in (3, 4, 3)]
    np.testing.assert_allclose(firsts, [1.0, -1.0, 1.0], rtol=1e-12)


def test_no_chain_starts_on_a_branch_of_negligible_mass():
    """With z ~ N(x, 0.1) observed at 2, the root x = −2 has e^{−800} of the mass of x = +2."""

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("z", dist.Normal(x, 0.1), obs=2.0)
        numpyro.deterministic("y", x * x)

    cm = ppinv.condition(model, {"y": 4.0})
    kernel = InverseNUTS(cm)
    state = kernel.init(jax.random.split(jax.random.PRNGKey(0), 4), 10, None, (), {})
    x = jax.vmap(kernel.postprocess_fn((), {}))(state.z)["x"]
    np.testing.assert_allclose(np.asarray(x), 2.0, rtol=1e-12)
    assert math.isfinite(BRANCH_LOG_DENSITY_GAP)
