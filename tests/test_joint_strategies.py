"""The joint-solve registry (``ppinv.joint``) and its log-linear strategy for power laws.

Every kind of joint solve is a strategy the search asks in order; a user's strategy
plugs in through the same interface (its θ, solve, log|det| and PGF) and is checked
here like ppinv's own: soundness, PGF round trip, log|det| against the dense Jacobian
and derivatives against finite differences (``ppinv.testing.check_inverse``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from ppinv.joint import JointSolve, Strategy, register_strategy, strategies, unregister_strategy
from ppinv.schedule import BlockStep
from ppinv.testing import check_inverse
from ppinv.theta import ThetaSpec, int_dtype

POS = constraints.positive


# --- power laws: the log-linear solve -------------------------------------------------
def ohm_and_power(current, resistance):  # V = I R, P = I² R
    return current * resistance, current**2 * resistance


def test_ohm_and_joule_heating_solved_jointly_for_current_and_resistance():
    inv = ppinv.inverse(ohm_and_power, 2.0, 5.0, support=[POS, POS])
    assert inv.n_theta == 0
    assert "log-linear" in inv.describe()
    current, resistance = inv((10.0, 20.0))
    np.testing.assert_allclose([current, resistance], [2.0, 5.0], rtol=1e-12)
    check_inverse(ohm_and_power, 2.0, 5.0, support=[POS, POS], n_points=4, dense_points=2)


def allometry(a, b, c):
    # known factors, a square root, a real power, a cube root and a sign, elementwise over vectors
    return 3.0 * c * a / jnp.sqrt(b), -(a**2) * b**1.5 / c, jnp.cbrt(a * b * c) * 2.0


SUPPORTS = [POS, constraints.interval(0.0, 10.0), constraints.greater_than(0.5)]
ARGS = (jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]), jnp.array([1.5, 0.7]))


def test_a_vector_system_of_monomials_with_known_factors_and_roots():
    inv = ppinv.inverse(allometry, *ARGS, support=SUPPORTS)
    assert inv.n_theta == 0 and "log-linear" in inv.describe()
    check_inverse(allometry, *ARGS, support=SUPPORTS, n_points=4, dense_points=2)


def test_an_observation_of_the_wrong_sign_is_outside_the_domain():
    inv = ppinv.inverse(allometry, *ARGS, support=SUPPORTS)
    y = allometry(*ARGS)
    assert bool(inv.in_domain(y))
    assert not bool(inv.in_domain((y[0], -y[1], y[2])))  # −a²b^1.5/c is negative for positive unknowns


def test_the_upper_bound_of_an_interval_support_is_checked_after_the_solve():
    inv = ppinv.inverse(allometry, *ARGS, support=SUPPORTS)
    outside = (ARGS[0], jnp.array([3.0, 12.0]), ARGS[2])  # b = 12 is outside (0, 10)
    assert not bool(inv.in_domain(allometry(*outside)))


def test_dependent_monomials_are_refused_not_solved():
    # a·b and a²·b² are functions of each other: no unique (a, b) — the exponent matrix is singular
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(lambda a, b: (a * b, (a * b) ** 2), 1.0, 2.0, support=[POS, POS])


def test_a_power_law_inside_a_model_conditions_exactly():
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    def model():
        current = numpyro.sample("current", dist.LogNormal(0.0, 0.5))
        resistance = numpyro.sample("resistance", dist.LogNormal(1.0, 0.5))
        numpyro.deterministic("voltage", current * resistance)
        numpyro.deterministic("power", current**2 * resistance)

    cm = ppinv.condition(model, {"voltage": 6.0, "power": 12.0})
    mcmc = MCMC(ppinv.infer.InverseMH(cm), num_warmup=5, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    s = mcmc.get_samples()
    # both latents are determined: I = P / V = 2, R = V² / P = 3
    np.testing.assert_allclose(s["current"], 2.0, rtol=1e-12)
    np.testing.assert_allclose(s["resistance"], 3.0, rtol=1e-12)


# --- linear-fractional systems ----------------------------------------------------------
SUBSTRATE = jnp.array([0.5, 2.0])


def michaelis_menten(vmax, km):  # rates at two substrate concentrations
    return vmax * SUBSTRATE / (km + SUBSTRATE)


def test_michaelis_menten_parameters_from_two_rates():
    inv = ppinv.inverse(michaelis_menten, 1.0, 1.0, support=[POS, POS])
    assert inv.n_theta == 0 and "linear-fractional" in inv.describe()
    np.testing.assert_allclose(inv(michaelis_menten(2.0, 0.7)), [2.0, 0.7], rtol=1e-12)
    check_inverse(michaelis_menten, 1.0, 1.0, support=[POS, POS], n_points=4, dense_points=2)


def weighted_mean_and_moebius(w, a):  # unknowns in numerators and denominators, element by element
    return (w * 2.0 + a * 3.0) / (w + a + 1.0), (a - 1.0) / (2.0 * w + 3.0)


def test_a_vector_linear_fractional_system_with_known_coefficients():
    args = (jnp.array([0.3, 0.8]), jnp.array([0.5, 1.5]))
    inv = ppinv.inverse(weighted_mean_and_moebius, *args, support=[POS, POS])
    assert inv.n_theta == 0 and "linear-fractional" in inv.describe()
    check_inverse(weighted_mean_and_moebius, *args, support=[POS, POS], n_points=4, dense_points=2)


def test_linear_fractional_observations_that_are_functions_of_each_other_are_refused():
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(lambda a, b: (a / (b + 1.0), 2.0 * a / (b + 1.0)), 1.0, 2.0)


def test_a_solution_outside_the_supports_is_outside_the_domain():
    inv = ppinv.inverse(michaelis_menten, 1.0, 1.0, support=[POS, POS])
    assert bool(inv.in_domain(michaelis_menten(2.0, 0.2)))
    assert not bool(inv.in_domain(michaelis_menten(2.0, -0.2)))  # the rates of a negative Km


@pytest.mark.slow
def test_michaelis_menten_posterior_over_an_unknown_substrate_matches_quadrature():
    """Vmax, Km and the second substrate concentration S₂ latent, two rates observed exactly.

    Reference, independent of ppinv's inverse and log|det|: on a grid of S₂, (Vmax, Km) from the
    2×2 linear system, and p(S₂ | v) ∝ p(S₂) p(Vmax) p(Km) / |det ∂v/∂(Vmax, Km)| with the
    Jacobian of the forward rates by jax.jacfwd.
    """
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC
    from scipy import integrate

    rates = jnp.array([0.8, 1.2])
    priors = {"vmax": dist.LogNormal(0.5, 0.5), "km": dist.LogNormal(-0.5, 0.5), "s2": dist.LogNormal(0.5, 0.4)}

    def model():
        vmax = numpyro.sample("vmax", priors["vmax"])
        km = numpyro.sample("km", priors["km"])
        s2 = numpyro.sample("s2", priors["s2"])
        s = jnp.stack([jnp.asarray(0.5), s2])
        numpyro.deterministic("rates", vmax * s / (km + s))

    cm = ppinv.condition(model, {"rates": rates})
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=400, num_samples=1500, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1))
    s2 = np.asarray(mcmc.get_samples()["s2"])

    def unnormalised(t):
        s = np.array([0.5, t])
        m = np.array([[-s[0], rates[0]], [-s[1], rates[1]]])  # v (Km + S) − Vmax S = 0
        vmax, km = np.linalg.solve(m, -rates * s)
        if vmax <= 0 or km <= 0:
            return 0.0
        jac = jax.jacfwd(lambda p: p[0] * jnp.asarray(s) / (p[1] + jnp.asarray(s)))(jnp.array([vmax, km]))
        logp = sum(float(priors[k].log_prob(v)) for k, v in (("vmax", vmax), ("km", km), ("s2", t)))
        return float(np.exp(logp) / abs(np.linalg.det(np.asarray(jac))))

    lo, hi = 0.2, 12.0
    z = integrate.quad(unnormalised, lo, hi, limit=200)[0]
    mean = integrate.quad(lambda t: t * unnormalised(t), lo, hi, limit=200)[0] / z
    second = integrate.quad(lambda t: t * t * unnormalised(t), lo, hi, limit=200)[0] / z
    sd = np.sqrt(second - mean**2)
    ess = float(numpyro.diagnostics.effective_sample_size(s2[None]))
    assert abs(s2.mean() - mean) < 4 * sd / np.sqrt(ess), (s2.mean(), mean, sd, ess)


# --- shares of a total ---------------------------------------------------------------
def head_shares(x):  # jax.random.dirichlet's gammas over their sum, all shares but the last
    return (x / jnp.sum(x))[:-1]


def test_shares_of_a_total_free_the_total():
    inv = ppinv.inverse(head_shares, jnp.ones(3), support=POS)
    assert inv.n_theta == 1 and list(inv.theta_spec) == ["total"]
    assert inv.theta_support["total"] is constraints.positive
    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(inv(head_shares(x), {"total": jnp.asarray(6.0)})[0], x, rtol=1e-12)
    check_inverse(head_shares, x, support=POS, n_points=4, dense_points=2)


def test_shares_of_real_amounts_with_the_first_one_unobserved():
    tail_shares = lambda x: (x / x.sum())[1:]  # noqa: E731
    inv = ppinv.inverse(tail_shares, jnp.ones(4))
    assert inv.theta_support["total"] is constraints.real
    check_inverse(tail_shares, jnp.array([1.0, -2.0, 3.0, 0.5]), n_points=4, dense_points=2)


def test_shares_outside_the_simplex_have_no_positive_preimage():
    inv = ppinv.inverse(head_shares, jnp.ones(3), support=POS)
    assert not bool(inv.in_domain(jnp.array([0.7, 0.6]), {"total": jnp.asarray(1.0)}))  # last share −0.3


def test_observing_every_share_is_refused_as_over_determined():
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(lambda x: x / jnp.sum(x), jnp.ones(3), support=POS)


@pytest.mark.slow
def test_gamma_amounts_given_their_shares_have_a_gamma_total():
    """Amounts gᵢ ~ Gamma(αᵢ, 1) and their shares observed exactly: the total is Gamma(Σα, 1),
    independent of the shares (the Dirichlet–Gamma construction), and g = total · shares."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    alpha = jnp.array([2.0, 3.0, 1.5])
    shares = jnp.array([0.2, 0.5])

    def model():
        g = numpyro.sample("g", dist.Gamma(alpha, 1.0))
        numpyro.deterministic("shares", (g / g.sum())[:-1])

    cm = ppinv.condition(model, {"shares": shares})
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=300, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    g = np.asarray(mcmc.get_samples()["g"])
    total = g.sum(-1)
    np.testing.assert_allclose(g[:, :2] / total[:, None], np.broadcast_to(shares, (len(g), 2)), atol=1e-12)
    ess = float(numpyro.diagnostics.effective_sample_size(total[None]))
    k = float(alpha.sum())  # Gamma(k, 1): mean k, variance k
    assert abs(total.mean() - k) < 4 * np.sqrt(k / ess), (total.mean(), k, ess)
    assert abs(total.var() - k) < 0.35 * k, (total.var(), k)


# --- the registry -------------------------------------------------------------------
def test_default_strategies_in_the_order_the_search_asks_them():
    names = [s.name for s in strategies()]
    assert names == ["softmax", "shares", "cholesky", "rule", "linear", "polar", "chain", "polynomial", "piecewise", "monotone", "monomial", "fractional",
                     "newton", "entries"]
    assert [s.name for s in strategies("last_resort")] == ["entries"]


class SumAndProduct(Strategy):
    """``s = a + b`` and ``p = a·b`` observed: the two roots of ``t² − s t + p``, θ picks the order."""

    name = "sum_and_product"

    def candidates(self, state):
        stalled = state.stalled()
        sums = [e for e in stalled if e.prim is jax.lax.add_p]
        products = [e for e in stalled if e.prim is jax.lax.mul_p]
        for s in sums:
            for p in products:
                if set(s.ins) == set(p.ins) and not any(state.is_known(v) for v in s.ins):
                    block = SumAndProductBlock(s, p)
                    yield JointSolve(lambda names, block=block: BlockStep(block, tuple(names)), block.theta,
                                     ("larger_first",), (s, p), tuple(block.leaves))


class SumAndProductBlock:
    known_inputs = ()
    description = "roots of t² − s t + p"

    def __init__(self, s, p):
        self.anchors, self.leaves = [s, p], list(s.ins)
        self.theta = (ThetaSpec((), np.dtype(int_dtype()), constraints.integer_interval(0, 1), "branch", "order"),)

    def solve(self, known, observed, theta):
        s, p = observed
        disc = s**2 - 4 * p
        root = jnp.sqrt(jnp.where(disc > 0, disc, 1.0))
        big, small = (s + root) / 2, (s - root) / 2
        first = theta[0] == 0
        a, b = jnp.where(first, big, small), jnp.where(first, small, big)
        return [a, b], -jnp.log(jnp.abs(a - b)), disc > 0

    def pgf(self, known, leaves):
        a, b = leaves
        return (jnp.where(a >= b, 0, 1).astype(int_dtype()),)


def sum_and_product(a, b):
    return a + b, a * b


def test_a_registered_strategy_takes_part_in_the_search():
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(sum_and_product, 1.0, 3.0)
    strategy = register_strategy(SumAndProduct(), before="linear")
    try:
        inv = ppinv.inverse(sum_and_product, 1.0, 3.0)
        assert "roots of t² − s t + p" in inv.describe()
        check_inverse(sum_and_product, 1.0, 3.0, n_points=4, dense_points=2)
        # both preimages of one observation, one per branch
        xs = {tuple(np.round([float(v) for v in inv((4.0, 3.0), {"larger_first": jnp.asarray(k)})], 12))
              for k in (0, 1)}
        assert xs == {(3.0, 1.0), (1.0, 3.0)}
    finally:
        unregister_strategy(strategy)
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(sum_and_product, 1.0, 3.0)


class TooGreedy(Strategy):
    """Proposes a solve that needs more θ than the budget allows, and records that it was asked."""

    name = "too_greedy"
    asked = 0

    def candidates(self, state):
        TooGreedy.asked += 1
        for e in state.stalled():
            spec = ThetaSpec((state.budget + 1,), np.dtype("float64"), constraints.real, "value", "too much")
            yield JointSolve(lambda names: None, (spec,), ("too_much",), (e,), tuple(e.ins))


def test_the_budget_is_charged_in_one_place_a_candidate_over_it_is_skipped():
    strategy = register_strategy(TooGreedy(), before="rule")
    try:
        inv = ppinv.inverse(lambda a, b: a * b + a, 1.0, 2.0)  # stalls once: one variable is freed
    finally:
        unregister_strategy(strategy)
    assert TooGreedy.asked >= 1
    assert inv.n_theta == 1 and "too_much" not in inv.theta_spec


class Broken(Strategy):
    name = "broken"

    def candidates(self, state):
        raise RuntimeError("this strategy cannot read the program")
        yield  # pragma: no cover


def test_a_strategy_that_raises_proposes_nothing():
    strategy = register_strategy(Broken(), before="rule")
    try:
        inv = ppinv.inverse(lambda a, b: a * b + a, 1.0, 2.0)  # solved as without it
        with pytest.raises(ppinv.InversionError):
            ppinv.inverse(sum_and_product, 1.0, 3.0)  # refused with ppinv's reason, not the RuntimeError
    finally:
        unregister_strategy(strategy)
    assert inv.n_theta == 1


def test_registering_something_that_is_not_a_strategy_says_what_is_expected():
    with pytest.raises(TypeError, match="ppinv.joint.Strategy"):
        register_strategy(object())
    with pytest.raises(ValueError, match="no strategy named 'nope'"):
        register_strategy(SumAndProduct(), before="nope")
