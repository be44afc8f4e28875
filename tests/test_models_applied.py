"""Applied models made possible by the joint solves and the hypot rule: ``models/binding_equilibrium.py``
(a certified Newton block), ``models/vote_shares.py`` (a softmax head) and ``models/drifter_currents.py``
(``hypot`` with a sign θ), against references built without ppinv.

The default tier checks the conditioned model's log density over its θ against the exact density
written out independently (the change of variables with a bisection root and ``jax.jacfwd`` of the
forward map; numpy for the softmax), its gradient against central differences, and that stock
NumPyro ignores the exact observations. The slow tier compares InverseNUTS posteriors with
quadrature, means within 4 Monte Carlo standard errors (from the effective sample size).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC
from numpyro.infer.util import log_density
from scipy import stats

import ppinv
from models import binding_equilibrium as binding
from models import drifter_currents as drifters
from models import vote_shares as votes
from ppinv.diagnostics import constraint_violation


def _density(cm, data):
    """``(values, observed) -> ((log density, site values), gradient)`` of a conditioned model over
    its θ sites, the exact observations as arguments (``handlers.condition`` on the exact sites),
    so one compilation serves every call (compiling the Newton solve is most of these tests' cost)."""
    def run(values, observed):
        ld, tr = log_density(handlers.condition(cm, observed), (), {}, values)
        return ld, {k: s["value"] for k, s in tr.items() if s["type"] in ("sample", "deterministic")}

    compiled = jax.jit(jax.value_and_grad(run, has_aux=True, allow_int=True))  # discrete θ: no gradient
    return lambda values, observed=None: compiled(values, {**data, **(observed or {})})


# --- binding equilibrium: the Newton block ---------------------------------------------------------
CONSTANTS = [(3.0, 8.0), (4.2, 12.5), (2.5, 19.0), (9.0, 3.0)]


def _binding_log_density(K_A, K_B):
    """log p(K_A, K_B, data) written out: priors, the read-out likelihood, the change of variables."""
    R = float(binding.free_receptor(np.array(K_A), np.array(K_B)))
    A = binding.TOTALS["A_total"] * K_A / (K_A + R)
    B = binding.TOTALS["B_total"] * K_B / (K_B + R)
    log_prior = sum(stats.loguniform.logpdf(k, *binding.K_RANGE) for k in (K_A, K_B))
    log_prior += sum(stats.uniform.logpdf(c, 0.0, binding.FREE_MAX) for c in (R, A, B))
    complexes = np.array([R * A / K_A, R * B / K_B])
    log_lik = stats.norm.logpdf(binding.BOUND, complexes, binding.SIGMA).sum()
    jac = np.asarray(jax.jacfwd(lambda x: jnp.stack(binding.balances(*x, K_A, K_B)))(jnp.array([R, A, B])))
    return log_prior + log_lik - np.log(abs(np.linalg.det(jac))), (R, A, B)


@pytest.fixture(scope="module")
def binding_cm():
    return binding.conditioned()


@pytest.fixture(scope="module")
def binding_density(binding_cm):
    return _density(binding_cm, {k: jnp.asarray(v) for k, v in binding.DATA.items()})


def test_binding_equilibrium_is_a_newton_block_with_the_exact_density(binding_cm, binding_density):
    plan = binding_cm.plan()
    assert "Newton solve" in plan.schedule.describe()
    assert set(plan.theta_sites) == {"K_A", "K_B"} and plan.schedule.n_theta == 2
    density = binding_density
    for K_A, K_B in CONSTANTS:
        (ld, tr), _ = density({"K_A": jnp.asarray(K_A), "K_B": jnp.asarray(K_B)})
        ref, free = _binding_log_density(K_A, K_B)
        np.testing.assert_allclose([tr["R"], tr["A"], tr["B"]], free, rtol=1e-11)  # the one root
        totals = binding.balances(tr["R"], tr["A"], tr["B"], K_A, K_B)
        np.testing.assert_allclose(totals, [binding.TOTALS[k] for k in ("R_total", "A_total", "B_total")],
                                   rtol=1e-13)
        np.testing.assert_allclose(ld, ref, rtol=1e-10)
    # the gradient (implicit function theorem through the solve) against central differences
    k, h = {"K_A": jnp.asarray(3.7), "K_B": jnp.asarray(11.0)}, 1e-5
    _, grad = density(k)
    for name in k:
        up, down = ({**k, name: k[name] + s * h} for s in (1, -1))
        fd = (density(up)[0][0] - density(down)[0][0]) / (2 * h)
        np.testing.assert_allclose(grad[name], fd, rtol=1e-6, err_msg=name)


def test_binding_equilibrium_outside_the_image_has_no_density(binding_density):
    """Totals no equilibrium inside the supports reaches: no density, rather than a wrong root."""
    (ld, _), _ = binding_density({"K_A": jnp.asarray(4.0), "K_B": jnp.asarray(10.0)}, {"A_total": jnp.asarray(1.5)})
    assert ld == -np.inf  # A_total = A + RA with A < 1 and RA ≤ R_total: 1.5 is out of reach
    # a new observation inside the image is solved by the same compiled program
    new = {"R_total": 0.5, "A_total": 0.4, "B_total": 0.3}
    (ld, tr), _ = binding_density({"K_A": jnp.asarray(4.0), "K_B": jnp.asarray(10.0)},
                                  {k: jnp.asarray(v) for k, v in new.items()})
    np.testing.assert_allclose(binding.balances(tr["R"], tr["A"], tr["B"], 4.0, 10.0), list(new.values()), rtol=1e-13)


# --- vote shares: the softmax head -----------------------------------------------------------------
HOUSE = [(0.0, 0.0), (0.13, 0.09), (-0.3, 0.4)]


def _votes_log_density(house):
    """log p(house, data): the house prior, the poll's multinomial at z*, and the result's density
    at z* (the prior of the logits times |∂z/∂c| = 1/(c₀ c₁ c₂))."""
    z = votes.result_logits()
    shares = np.concatenate([[1 - votes.RESULT.sum()], votes.RESULT])
    poll_probs = np.exp(np.concatenate([[0.0], z + house]))
    poll_probs /= poll_probs.sum()
    return (stats.norm.logpdf(house, 0.0, votes.HOUSE_SD).sum()
            + stats.multinomial.logpmf(votes.POLL, votes.N_POLL, poll_probs)
            + stats.norm.logpdf(z, votes.PRIOR_MEAN, 1.0).sum() - np.log(shares).sum())


def test_vote_shares_is_a_softmax_head_with_the_exact_density():
    cm = votes.conditioned()
    plan = cm.plan()
    assert "softmax head" in plan.schedule.describe() and plan.schedule.n_theta == 0
    density = _density(cm, {"result": jnp.asarray(votes.RESULT)})
    for house in HOUSE:
        (ld, tr), _ = density({"house": jnp.asarray(house)})
        np.testing.assert_allclose(tr["z"], votes.result_logits(), rtol=1e-13)
        np.testing.assert_allclose(ld, _votes_log_density(np.asarray(house)), rtol=1e-12)


# --- drifter currents: hypot with a sign θ --------------------------------------------------------
def test_drifter_currents_are_solved_up_to_a_sign_with_the_exact_density():
    cm = drifters.conditioned()
    plan = cm.plan()
    assert "hypot" in plan.schedule.describe() and plan.schedule.n_theta == 0
    (site,) = plan.theta_sites.values()
    density = _density(cm, {"speed": jnp.asarray(drifters.SPEED)})
    a = drifters.along_channel_magnitudes()
    for mean, signs in ((0.1, (1, 1, 1)), (-0.3, (0, 1, 0)), (0.4, (1, 0, 0))):
        (ld, tr), _ = density({"mean": jnp.asarray(mean), site: jnp.asarray(signs)})
        u = np.asarray(tr["u"])
        np.testing.assert_allclose(np.abs(u), a, rtol=1e-13)
        np.testing.assert_allclose(np.hypot(u, drifters.CROSS), drifters.SPEED, rtol=1e-13)
        # the prior, and |∂u/∂speed| = speed/|u| per drifter
        ref = (stats.norm.logpdf(mean, *drifters.MEAN_PRIOR) + stats.norm.logpdf(u, mean, drifters.SPREAD).sum()
               + np.log(drifters.SPEED / a).sum())
        np.testing.assert_allclose(ld, ref, rtol=1e-12)
    # the two directions of each drifter are both reached
    (_, up), _ = density({"mean": jnp.asarray(0.0), site: jnp.asarray((1, 1, 1))})
    (_, down), _ = density({"mean": jnp.asarray(0.0), site: jnp.asarray((0, 0, 0))})
    np.testing.assert_allclose(np.asarray(up["u"]), -np.asarray(down["u"]), rtol=1e-13)


@pytest.mark.parametrize("mod", [binding, votes, drifters], ids=["binding_equilibrium", "vote_shares", "drifter_currents"])
def test_stock_numpyro_ignores_the_exact_observations(mod):
    """The reason for ppinv here: ``numpyro.handlers.condition`` on a deterministic site changes nothing."""
    tr = handlers.trace(handlers.seed(handlers.condition(mod.model, mod.DATA), 0)).get_trace()
    for site, value in mod.DATA.items():
        assert not np.allclose(tr[site]["value"], value)


# --- posteriors against quadrature (slow) ---------------------------------------------------------
def _assert_posterior_matches(samples, reference, sds=4.0):
    """Means within ``sds`` Monte Carlo standard errors (ESS-based), sds within 15 %."""
    for site, ref in reference.items():
        x = np.asarray(samples[site])  # (chains, draws, ...)
        ref_sd = np.sqrt(ref["var"])
        if np.all(ref_sd == 0):  # a point mass (latents fixed by the exact observation)
            np.testing.assert_allclose(x, np.broadcast_to(ref["mean"], x.shape), rtol=1e-10)
            continue
        ess = effective_sample_size(x)
        error = np.abs(x.mean(axis=(0, 1)) - ref["mean"])
        assert np.all(error < sds * ref_sd / np.sqrt(ess)), (site, x.mean(axis=(0, 1)), ref["mean"], ess)
        np.testing.assert_allclose(x.std(axis=(0, 1)), ref_sd, rtol=0.15, err_msg=site)


def _inverse_nuts(cm, seed=0):
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=400, num_samples=600, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed))
    assert constraint_violation(cm, mcmc.get_samples()) < 1e-10
    return mcmc.get_samples(group_by_chain=True)


@pytest.mark.slow
def test_binding_equilibrium_posterior_matches_quadrature(binding_cm):
    _assert_posterior_matches(_inverse_nuts(binding_cm), binding.reference_moments(n=201))


@pytest.mark.slow
def test_vote_shares_posterior_matches_quadrature():
    _assert_posterior_matches(_inverse_nuts(votes.conditioned()), votes.reference_moments())


@pytest.mark.slow
def test_drifter_currents_posterior_matches_the_mixture_over_directions():
    _assert_posterior_matches(_inverse_nuts(drifters.conditioned()), drifters.reference_moments())
