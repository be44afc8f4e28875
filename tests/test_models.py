"""Every example model in ``models/`` conditions and samples exactly (tiny runs).

For each invertible model: ``conditioned()`` plans an inverse with
``dim X − dim Y`` continuous θ, InverseNUTS runs a few steps, and every sample
satisfies the observation to round-off (``constraint_violation ≤ 1e-8``).
``sat`` cannot be conditioned (discrete latents): a strict expected failure.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import MCMC

import ppinv
from models import ALL_MODELS, INVERTIBLE_MODELS
from ppinv.diagnostics import constraint_violation
from ppinv.infer import InverseNUTS, pgf_initial_values
from ppinv.testing import check_inverse

NAMES = list(INVERTIBLE_MODELS)
# the default tier samples a few models of different kinds; every model runs in the slow tier
DEFAULT_TIER = {"product_lognormal", "arithmetic_tree", "sine", "arm"}


def _initial_values(cm, key):
    """A valid start from the PGF (prior draw → θ = pgf(x)), computed under one ``jit``.

    The kernel's own start runs op by op, compiling every primitive separately;
    one compiled program keeps this file fast. An invalid start is caught by
    the kernel's initialisation.
    """
    return jax.jit(lambda k: pgf_initial_values(cm, k))(key)


@pytest.mark.parametrize("name", [n if n in DEFAULT_TIER else pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_model_conditions_and_samples_exactly(name):
    mod = ALL_MODELS[name]
    cm = mod.conditioned()
    plan = cm.plan()
    assert plan.schedule.n_theta == mod.LATENT_DIM - mod.OBSERVED_DIM, plan.schedule.describe()
    if hasattr(mod, "init_params"):  # the prior-draw start fails (network_tomography: see its docstring)
        init = mod.init_params(cm)
    else:
        init = _initial_values(cm, jax.random.PRNGKey(1))
    mcmc = MCMC(InverseNUTS(cm, max_tree_depth=5), num_warmup=20, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), init_params=init)
    samples = mcmc.get_samples()
    for site in plan.upstream:
        assert np.all(np.isfinite(np.asarray(samples[site]))), site
    assert constraint_violation(cm, samples) <= 1e-8
    assert not set(plan.exact) & set(samples)  # exact observations are data, not sites of the model


def test_linear_gaussian_scales_to_200_by_50():
    from models import linear_gaussian

    plan = linear_gaussian.conditioned(200, 50).plan()
    assert plan.schedule.n_theta == 150
    x = jnp.asarray(linear_gaussian.true_x(200))
    theta = plan.pgf([], {"x": x})
    back, _, ok = plan.invert([], theta)
    assert bool(ok)
    np.testing.assert_allclose(back["x"], x, atol=1e-10)


def test_lotka_volterra_data_match_the_paper():
    from models import lotka_volterra

    y = lotka_volterra.DATA["y"]
    assert y.shape == (100,)
    np.testing.assert_allclose(y[:2], [90.4714351637, 102.8561678217], atol=1e-9)
    lat = lotka_volterra.true_latents()
    sim = lotka_volterra.simulate(jnp.exp(lat["u_z"] - 2.0), lat["u_n"])
    np.testing.assert_allclose(sim, y, rtol=1e-12)


@pytest.mark.slow  # the 3-link arm runs in the default tier (test_model_conditions_and_samples_exactly)
def test_arm_with_5_links_inverts():
    """Five links: 3 continuous θ (the first three joints) + elbow sign and two turn counts."""
    from models import arm

    cm = arm.conditioned(5)
    plan = cm.plan()
    assert plan.schedule.n_theta == 3
    assert sorted(k for k, s in plan.schedule.theta.items() if s.discrete) == [
        "two_link_elbow", "two_link_turn1", "two_link_turn2"]
    values = _initial_values(cm, jax.random.PRNGKey(1))
    samples = jax.tree_util.tree_map(lambda v: jnp.asarray(v)[None], values)
    theta = {n: samples[site][0] for n, site in plan.theta_sites.items()}
    x, _, ok = plan.invert([], theta)
    assert bool(ok)
    assert constraint_violation(cm, {"angles": x["angles"][None]}) <= 1e-12


def test_arm_declared_inverse_matches_the_direct_formula():
    from models import arm

    angles = jnp.array([0.3, -0.4, 0.8, 0.2, -0.1])
    for n in (3, 5):
        a = angles[:n]
        y_new = handlers.trace(handlers.substitute(arm.make_model(n), {"angles": a})).get_trace()["end"]["value"]
        y_old = handlers.trace(handlers.substitute(arm.make_direct_model(n), {"angles": a})).get_trace()["end"]["value"]
        np.testing.assert_allclose(y_new, y_old, rtol=1e-12)


def test_arm_two_link_inverse_is_sound_complete_and_has_the_right_log_det():
    """The declared two-link inverse: round trip through the PGF (turns included) and dense log|det|."""
    from models import arm

    two_link = arm.make_two_link(0.8, 0.6)
    points = [(0.3, 1.2), (-2.0, -0.7), (7.0, 0.4), (0.1, -7.5), (3.0, 2.9)]
    report = check_inverse(two_link, 0.3, 1.2, points=[tuple(map(jnp.asarray, p)) for p in points],
                           rtol=1e-10, log_det_atol=1e-10)
    assert report.n_in_domain == len(points)


@pytest.mark.xfail(
    strict=True,
    raises=ppinv.ConditionError,
    reason=(
        "sat: Bernoulli latents lie upstream of the exact observation. The preimage of True under a "
        "Boolean formula is a finite set of assignments that would need enumeration (SAT solving), not a "
        "parametric inverse with a density; ppinv does not invert through discrete latents."
    ),
)
def test_sat_cannot_be_conditioned():
    ALL_MODELS["sat"].conditioned()
