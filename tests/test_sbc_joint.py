"""Simulation-based calibration (Talts et al. 2018) of the joint solves: Newton blocks, softmax
heads, shares of a total and planar chains (slow tier).

For each mechanism a small model: latents are drawn from the prior, the exact observation is
computed from them, the model is conditioned on it, and the posterior is sampled; the rank of
the true value among the (thinned) draws is uniform when the conditioned density is the exact
posterior. One conditioned model serves every replicate: the observation is passed in with
``numpyro.handlers.condition`` on the exact site, so one compiled program samples all of
them at once (``vmap``). The sampler is a random-walk Metropolis in θ's unconstrained
coordinates (its step adapted per replicate during warm-up), independence jumps drawing a
bounded θ uniformly on its support (the chain's first angle ranges over separate arcs) and
symmetric flips of discrete θ, written here in a few lines, so the test measures ppinv's density and solves rather than
a kernel; each chain starts at the true θ (from the PGF), which is itself a posterior draw,
so no warm-up bias is possible and adaptation only tunes the step. Ranks of each statistic
are binned into 8 bins and tested by χ² (100 replicates, 99 thinned draws each); the same test
fails the shares' density with its log|det| left out (p ~ 1e-15), so it has power.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats

import ppinv

pytestmark = pytest.mark.slow

N_REPLICATES = 100
N_DRAWS = 99  # thinned draws per replicate: ranks 0..99, 100 values in 8 bins of 12–13
THIN = 10
N_WARMUP = 1000
N_BINS = 8
ALPHA = 1e-3  # per statistic; a wrong density fails at p ~ 1e-10 here


# --- one small model per mechanism ---------------------------------------------------------------
def newton_model():  # a square coupled block: Newton with its certificate, θ = s
    s = numpyro.sample("s", dist.Uniform(0.0, 0.5))
    x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
    x2 = numpyro.sample("x2", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.stack([x1 + s * jnp.tanh(x2), x2 + 0.2 * jnp.sin(x1)]))


def softmax_model():  # every share but one of unknown logits: θ = their shift
    b = numpyro.sample("b", dist.Normal(jnp.array([0.5, 0.0, -0.5]), 1.0).to_event(1))
    numpyro.deterministic("y", jax.nn.softmax(b)[:2])


def shares_model():  # shares of Gamma amounts: θ = the total
    x = numpyro.sample("x", dist.Gamma(jnp.array([1.5, 2.0, 3.0]), 1.0).to_event(1))
    numpyro.deterministic("y", (x / x.sum())[:2])


LINKS = jnp.array([1.0, 0.8, 0.6])


def chain_model():  # a planar arm of absolute joint angles: θ = the first angle and the elbow
    q = numpyro.sample("q", dist.Uniform(-jnp.pi, jnp.pi).expand([3]).to_event(1))
    numpyro.deterministic("y", jnp.stack([jnp.sum(LINKS * jnp.cos(q)), jnp.sum(LINKS * jnp.sin(q))]))


#: model, its latents, the statistics ranked (name -> function of the latents), the solve's words
CASES = {
    "newton": (newton_model, ("s", "x1", "x2"),
               {"s": lambda v: v["s"], "x1": lambda v: v["x1"]}, "Newton solve"),
    "softmax": (softmax_model, ("b",),  # b is monotone in the one θ: a non-monotone statistic too
                {"b0": lambda v: v["b"][..., 0], "b0_squared": lambda v: v["b"][..., 0] ** 2}, "softmax head"),
    "shares": (shares_model, ("x",),
               {"total": lambda v: v["x"].sum(-1), "x0_from_2": lambda v: (v["x"][..., 0] - 2.0) ** 2},
               "shares of a total"),
    "chain": (chain_model, ("q",),
              {"q0": lambda v: v["q"][..., 0], "q2": lambda v: v["q"][..., 2]}, "chain"),
}


# --- the sampler -----------------------------------------------------------------------------------
class Posterior:
    """The conditioned model's log density over θ at any observation ``y``, in unconstrained
    coordinates for continuous θ (discrete θ as they are), with the latents as aux values."""

    def __init__(self, model, latents, y0, distortion=None):
        self.distortion = distortion  # a term added to the log density (to check the test's power)
        self.cm = ppinv.condition(model, {"y": y0})
        self.plan = self.cm.plan()
        self.latents = latents
        tr = handlers.trace(handlers.seed(self.cm, 0)).get_trace()
        sites = list(self.plan.theta_sites.values())
        self.supports = {s: tr[s]["fn"].support for s in sites}
        self.discrete = [s for s in sites if self.supports[s].is_discrete]
        self.continuous = [s for s in sites if s not in self.discrete]
        self.bounds = {s: _bounds(self.supports[s]) for s in self.continuous}

    def log_abs_det(self, u):
        """``log|∂θ/∂u|`` of the unconstrained coordinates (densities in θ add −this)."""
        return sum(jnp.sum(biject_to(self.supports[s]).log_abs_det_jacobian(u[s], biject_to(self.supports[s])(u[s])))
                   for s in self.continuous)

    def uniform_draw(self, key, u):
        """Unconstrained coordinates of θ drawn uniformly on its bounded supports (``None`` if unbounded)."""
        if any(b is None for b in self.bounds.values()):
            return None
        keys = jax.random.split(key, len(self.continuous))
        return {s: biject_to(self.supports[s]).inv(jax.random.uniform(k, jnp.shape(u[s]), minval=lo, maxval=hi))
                for k, (s, (lo, hi)) in zip(keys, self.bounds.items())}

    def unconstrain(self, theta):
        return {s: biject_to(self.supports[s]).inv(theta[s]) for s in self.continuous}

    def log_p(self, u, d, y):
        x = {s: biject_to(self.supports[s])(u[s]) for s in self.continuous}
        ld, tr = log_density(handlers.condition(self.cm, {"y": y}), (), {}, {**x, **d})
        for s in self.continuous:
            ld = ld + jnp.sum(biject_to(self.supports[s]).log_abs_det_jacobian(u[s], x[s]))
        latents = {n: tr[n]["value"] for n in self.latents}
        if self.distortion is not None:
            ld = ld + self.distortion(latents)
        ld = jnp.where(jnp.isnan(ld), -jnp.inf, ld)
        return ld, latents

    def flip(self, site, value, key):
        """A symmetric proposal for a discrete θ: the other of two values, else a step of ±1."""
        support = self.supports[site]
        lo, hi = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
        if lo is not None and hi is not None and int(hi) - int(lo) == 1:
            return (lo + hi - value).astype(value.dtype)
        return value + jnp.where(jax.random.bernoulli(key), 1, -1).astype(value.dtype)


def _bounds(support):
    while hasattr(support, "base_constraint"):  # to_event
        support = support.base_constraint
    lo, hi = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    if lo is None or hi is None or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)):
        return None
    return lo, hi


def rw_metropolis(post, key, u0, d0, y):
    """Thinned draws of the latents from one chain started at ``(u0, d0)`` for observation ``y``."""
    flat0, unravel = ravel_pytree(u0)

    def log_p(flat, d):
        return post.log_p(unravel(flat), d, y)

    def step(state, inputs):
        flat, d, lp, aux, log_step = state
        key, adapt_rate = inputs
        k_move, k_accept, k_flip, k_jump = jax.random.split(key, 4)
        proposal = flat + jnp.exp(log_step) * jax.random.normal(k_move, flat.shape)
        lp_new, aux_new = log_p(proposal, d)
        accept = jnp.log(jax.random.uniform(k_accept)) < lp_new - lp
        flat, lp = jnp.where(accept, proposal, flat), jnp.where(accept, lp_new, lp)
        aux = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), aux_new, aux)
        log_step = log_step + adapt_rate * (accept - 0.44)  # toward the 1-D optimum of 44 %
        jump = post.uniform_draw(k_jump, unravel(flat))
        if jump is not None:  # an independence move: a posterior of separate arcs is crossed
            k_j, k_acc = jax.random.split(k_jump)
            proposal, _ = ravel_pytree(jump)
            lp_new, aux_new = log_p(proposal, d)
            log_ratio = lp_new - lp - post.log_abs_det(jump) + post.log_abs_det(unravel(flat))
            ok = jnp.log(jax.random.uniform(k_acc)) < log_ratio
            flat, lp = jnp.where(ok, proposal, flat), jnp.where(ok, lp_new, lp)
            aux = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), aux_new, aux)
        for site, k in zip(post.discrete, jax.random.split(k_flip, max(len(post.discrete), 1))):
            k_prop, k_acc = jax.random.split(k)
            d_new = {**d, site: post.flip(site, d[site], k_prop)}
            lp_new, aux_new = log_p(flat, d_new)
            ok = post.supports[site].check(d_new[site]) & (jnp.log(jax.random.uniform(k_acc)) < lp_new - lp)
            d = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), d_new, d)
            lp = jnp.where(ok, lp_new, lp)
            aux = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), aux_new, aux)
        return (flat, d, lp, aux, log_step), aux

    lp0, aux0 = log_p(flat0, d0)
    n_steps = N_WARMUP + N_DRAWS * THIN
    rates = jnp.where(jnp.arange(n_steps) < N_WARMUP, 1.0 / jnp.sqrt(1.0 + jnp.arange(n_steps) / 10.0), 0.0)
    init = (flat0, d0, lp0, aux0, jnp.log(0.5))
    _, trace = jax.lax.scan(step, init, (jax.random.split(key, n_steps), rates))
    return jax.tree_util.tree_map(lambda a: a[N_WARMUP + THIN - 1::THIN], trace)


def sbc_ranks(case, seed=0, distortion=None):
    """``({statistic: ranks (replicates,)}, posterior, draws, prior draws)`` for one mechanism."""
    model, latents, statistics, _ = CASES[case]
    k_prior, k_chains = jax.random.split(jax.random.PRNGKey(seed))
    prior = Predictive(model, num_samples=N_REPLICATES)(k_prior)
    post = Posterior(model, latents, prior["y"][0], distortion)
    truth = {n: prior[n] for n in latents}
    theta = post.cm.theta_of(truth)  # the PGF: each replicate's true θ
    u0, d0 = jax.vmap(post.unconstrain)(theta), {s: theta[s] for s in post.discrete}
    chains = jax.jit(jax.vmap(lambda k, u, d, y: rw_metropolis(post, k, u, d, y)))
    draws = chains(jax.random.split(k_chains, N_REPLICATES), u0, d0, prior["y"])
    ranks = {name: np.sum(np.asarray(f(draws)) < np.asarray(f(truth))[:, None], axis=1)
             for name, f in statistics.items()}
    return ranks, post, draws, prior


def rank_p_value(ranks):
    """χ² test of uniform ranks (0..N_DRAWS) in :data:`N_BINS` equal bins."""
    bins = np.arange(N_DRAWS + 1) * N_BINS // (N_DRAWS + 1)  # the bin of every possible rank
    counts = np.bincount(bins[ranks], minlength=N_BINS)
    expected = np.bincount(bins, minlength=N_BINS) / (N_DRAWS + 1) * len(ranks)  # 13 or 12 ranks a bin
    return stats.chisquare(counts, expected).pvalue


@pytest.mark.parametrize("case", list(CASES))
def test_sbc_ranks_are_uniform(case):
    start = time.perf_counter()
    ranks, post, draws, prior = sbc_ranks(case)
    assert CASES[case][3] in post.plan.schedule.describe()
    # every draw satisfies its replicate's observation
    model = CASES[case][0]
    y = jax.vmap(jax.vmap(lambda lat: handlers.trace(handlers.substitute(handlers.seed(model, 0), lat))
                          .get_trace()["y"]["value"]))(draws)
    np.testing.assert_allclose(y, np.broadcast_to(np.asarray(prior["y"])[:, None], y.shape), atol=1e-10)
    p_values = {name: rank_p_value(r) for name, r in ranks.items()}
    print(f"SBC {case}: p = {p_values}, {time.perf_counter() - start:.1f} s")
    assert all(p > ALPHA for p in p_values.values()), p_values


def test_sbc_detects_a_density_without_its_log_det():
    """The test's power: the shares' density without ``log|det| = (K − 1) log Σx`` fails it."""
    ranks, *_ = sbc_ranks("shares", distortion=lambda lat: -2.0 * jnp.log(lat["x"].sum()))
    p_values = {name: rank_p_value(r) for name, r in ranks.items()}
    print(f"SBC shares without log|det|: p = {p_values}")
    assert min(p_values.values()) < ALPHA, p_values


# --- InverseNUTS through one MCMC object ---------------------------------------------------------
NUTS_WARMUP = 100
NUTS_THIN = 3


def shares_observed_at(y_obs):
    """:func:`shares_model` with its observation a model argument (a ``Delta`` site observed at ``y_obs``)."""
    x = numpyro.sample("x", dist.Gamma(jnp.array([1.5, 2.0, 3.0]), 1.0).to_event(1))
    numpyro.sample("y", dist.Delta((x / x.sum())[:2], event_dim=1), obs=y_obs)


def test_sbc_inverse_nuts_reusing_one_mcmc_for_every_replicate():
    """SBC of the shares with ppinv's own InverseNUTS: one ``MCMC`` (``jit_model_args=True``) runs every
    replicate, the observation passed as a model argument; only the first run compiles anything.

    Each chain starts at its replicate's true θ (a posterior draw), as the random-walk cases do."""
    from numpyro.infer import MCMC

    from ppinv.infer import InverseNUTS
    from tests.test_compilation import compilations

    start = time.perf_counter()
    _, _, statistics, _ = CASES["shares"]
    prior = Predictive(shares_model, num_samples=N_REPLICATES)(jax.random.PRNGKey(1))
    cm = ppinv.condition(shares_observed_at)
    mcmc = MCMC(InverseNUTS(cm), num_warmup=NUTS_WARMUP, num_samples=N_DRAWS * NUTS_THIN, thinning=NUTS_THIN,
                jit_model_args=True, progress_bar=True)
    # NumPyro turns the bar off where CI or PYTEST_XDIST_WORKER is set; without it NumPyro ≤ 0.22
    # compiles its loop again at every run (tests/test_compilation.py)
    mcmc.progress_bar = True
    ranks = {name: [] for name in statistics}
    later_compiles = 0
    for i in range(N_REPLICATES):
        y, truth = prior["y"][i], {"x": prior["x"][i]}
        theta = cm.theta_of(truth, y, batch_ndims=0)
        with compilations() as counts:
            mcmc.run(jax.random.PRNGKey(100 + i), y, init_params=theta)
        later_compiles += sum(counts.values()) if i else 0
        x = mcmc.get_samples()["x"]
        np.testing.assert_allclose((x / x.sum(-1, keepdims=True))[:, :2], np.broadcast_to(y, (len(x), 2)), atol=1e-10)
        for name, f in statistics.items():
            ranks[name].append(int(np.sum(np.asarray(f({"x": x})) < float(f(truth)))))
    assert later_compiles == 0, later_compiles
    p_values = {name: rank_p_value(np.asarray(r)) for name, r in ranks.items()}
    print(f"SBC shares by InverseNUTS through one MCMC: p = {p_values}, {time.perf_counter() - start:.1f} s")
    assert all(p > ALPHA for p in p_values.values()), p_values
