"""The example models made possible by rational solves, sampled matrices, placements and triangular systems.

* ``enzyme_assay`` — Michaelis–Menten read-out: S solved by a Möbius map (quadrature over Vmax, Km);
* ``isotope_mixing`` — diet fractions solved per draw of sampled source signatures (quadrature over
  the simplex);
* ``village_totals`` — incomes split from exact ``.at[].add`` village totals (Gamma–Dirichlet closed form);
* ``stick_breaking_abundance`` — sticks solved entry by entry from exact GEM shares (conjugate α).

Default tier, per model: it conditions with the expected mechanism and θ; latent values (seeded
draws) mapped through the PGF and the inverse satisfy the observation (``constraint_violation ≤
1e-8``) and equal the closed-form preimage; the hand-written inverses of the comparison suite have
ppinv's density. Slow tier: ``check_conditioned`` (``jax.grad``/``jacfwd`` of the potential against
central differences, soundness at moved points) and InverseNUTS posteriors against the references,
with ESS-based tolerances.

``isotope_mixing``'s conditioning test is in the slow tier: ``condition`` spends 5-10 s drawing the
typical point of the linear solves (a prior draw of the Dirichlet run op by op); its quadrature test
stays in the default tier.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import enzyme_assay, isotope_mixing, stick_breaking_abundance, village_totals
from ppinv.diagnostics import constraint_violation, constraint_violations
from ppinv.infer import InverseNUTS
from ppinv.testing import check_conditioned
from tests.helpers import assert_mean, assert_var, run_mcmc


RNG = np.random.default_rng(0)
MODELS = {m.__name__.rsplit(".", 1)[-1]: m for m in (enzyme_assay, isotope_mixing, village_totals,
                                                     stick_breaking_abundance)}


def _steps(plan):
    return plan.schedule.describe()


def points_on_the_constraint(cm, latents):
    """Latents ``G(y_obs, pgf(x))`` for a batch of latent values ``x`` (one compiled, vmapped program),
    with the untouched latents as given, and whether each point is inside the domain."""
    plan = cm.plan()
    ctx = plan.ctx_of((), {})
    latents = {k: jnp.asarray(v) for k, v in latents.items()}

    def one(lat):
        x, _, ok = plan.invert(ctx, plan.pgf(ctx, lat))
        return {**x, **{k: lat[k] for k in plan.untouched}}, ok

    x, ok = jax.jit(jax.vmap(one))(latents)
    return {k: np.asarray(v) for k, v in x.items()}, np.asarray(ok)


def violation(cm, x):
    """``constraint_violation`` (the original model re-run on the latents), compiled as one program."""
    return float(jnp.max(jax.jit(lambda s: constraint_violations(cm, s))(x)))


def _valid(x, ok):
    assert ok.sum() >= 2, f"only {ok.sum()} of {len(ok)} PGF points are inside the domain"
    return {k: v[ok] for k, v in x.items()}


@pytest.mark.slow  # compiles the potential with jacfwd and jacrev: 5-30 s per model on the shared CPUs
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_potential_gradient_and_soundness(name):
    """``jax.grad`` and ``jacfwd`` of NumPyro's potential against central differences at PGF points of
    prior draws and points moved off them; the original model reproduces the data at each."""
    report = check_conditioned(MODELS[name].conditioned(), n_points=2, rtol=1e-10)
    assert report.n_grad_checked > 0



def assert_posterior_matches(cm, ref, names, num_warmup=300, num_samples=1000):
    """InverseNUTS draws satisfy the observation exactly and match ``ref`` (site -> mean, var) site by site."""
    s = run_mcmc(InverseNUTS(cm), num_warmup=num_warmup, num_samples=num_samples).get_samples()
    assert constraint_violation(cm, s) <= 1e-8
    for name in names:
        draws = np.asarray(s[name]).reshape(len(s[name]), -1)
        mean, var = np.ravel(ref[name]["mean"]), np.ravel(ref[name]["var"])
        assert_mean(draws, mean, sd=np.sqrt(var), what=f"{name} mean")
        assert_var(draws, var)

# --- enzyme_assay ------------------------------------------------------------------------------------
def test_enzyme_assay_solves_the_substrate_by_a_moebius_map():
    cm = enzyme_assay.conditioned()
    plan = cm.plan()
    assert sorted(plan.theta_sites) == ["Km", "Vmax"] and "Möbius" in _steps(plan), _steps(plan)
    assert plan.schedule.n_theta == enzyme_assay.LATENT_DIM - enzyme_assay.OBSERVED_DIM
    n = 6
    x = _valid(*points_on_the_constraint(cm, {"Vmax": RNG.lognormal(np.log(2.2), 0.1, n),
                                              "Km": RNG.lognormal(np.log(0.8), 0.3, n),
                                              "S": RNG.lognormal(0.0, 1.0, n)}))
    assert violation(cm, x) <= 1e-8
    np.testing.assert_allclose(x["S"], enzyme_assay.substrate(x["Vmax"], x["Km"]), rtol=1e-12)
    assert np.all(x["Vmax"] > enzyme_assay.V_SAMPLE)  # the only region with a positive root


@pytest.mark.slow
def test_enzyme_assay_posterior_against_quadrature():
    cm = enzyme_assay.conditioned()
    assert_posterior_matches(cm, enzyme_assay.reference_moments(), ("Vmax", "Km", "S"))


def test_enzyme_assay_quadrature_does_not_depend_on_the_grid():
    coarse, fine = enzyme_assay.reference_moments(n=301), enzyme_assay.reference_moments(n=601)
    for name in ("Vmax", "Km", "S"):
        np.testing.assert_allclose(coarse[name]["mean"], fine[name]["mean"], rtol=1e-9)
        np.testing.assert_allclose(coarse[name]["var"], fine[name]["var"], rtol=1e-7)


# --- isotope_mixing ----------------------------------------------------------------------------------
def _mixing_fractions(source):
    """``f`` from the mass balance and the two isotope equations, by NumPy, per draw of ``source``."""
    k = source.shape[-2]
    rows = np.concatenate([np.swapaxes(source + isotope_mixing.TDF, -1, -2), np.ones(source.shape[:-2] + (1, k))],
                          axis=-2)
    rhs = np.concatenate([isotope_mixing.CONSUMER, [1.0]])
    return np.linalg.solve(rows, np.broadcast_to(rhs, source.shape[:-2] + (k,))[..., None])[..., 0]


@pytest.mark.slow  # conditioning alone takes 5-10 s: see the note in the module docstring
def test_isotope_mixing_solves_the_fractions_per_draw_of_the_sources():
    cm = isotope_mixing.conditioned(free=isotope_mixing.FREE)
    plan = cm.plan()
    assert list(plan.theta_sites) == ["source"] and "square solve" in _steps(plan), _steps(plan)
    assert plan.schedule.n_theta == isotope_mixing.LATENT_DIM - isotope_mixing.OBSERVED_DIM
    n = 16
    x = _valid(*points_on_the_constraint(cm, {
        "f": RNG.dirichlet(np.full(3, isotope_mixing.ALPHA), n),
        "source": isotope_mixing.SOURCE_MEAN + isotope_mixing.SOURCE_SD * RNG.normal(size=(n, 3, 2))}))
    assert violation(cm, x) <= 1e-8
    np.testing.assert_allclose(x["f"], _mixing_fractions(x["source"]), rtol=1e-10, atol=1e-12)
    assert np.all(x["f"] > 0)


def test_isotope_mixing_quadrature_against_scipy():
    """The Gauss–Legendre simplex rule against scipy's adaptive dblquad, for E[f₁]."""
    from scipy import integrate

    def density(f2, f1):
        f = np.array([f1, f2, 1.0 - f1 - f2])
        mu, var = isotope_mixing._tracer_given_f(f[None])
        r = isotope_mixing.CONSUMER - isotope_mixing.TDF - mu[0]
        return np.prod(f) ** (isotope_mixing.ALPHA - 1) * np.exp(-0.5 * np.sum(r**2 / var[0])) / np.sqrt(var[0].prod())

    z = integrate.dblquad(density, 0, 1, 0, lambda f1: 1 - f1)[0]
    m1 = integrate.dblquad(lambda f2, f1: f1 * density(f2, f1), 0, 1, 0, lambda f1: 1 - f1)[0] / z
    np.testing.assert_allclose(isotope_mixing.reference_moments()["f"]["mean"][0], m1, rtol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("free", [None, isotope_mixing.FREE], ids=["default", "source"])
def test_isotope_mixing_posterior_against_quadrature(free):
    cm = isotope_mixing.conditioned(free=free)
    assert_posterior_matches(cm, isotope_mixing.reference_moments(), ("f", "source"), num_warmup=400,
                             num_samples=1200)


# --- village_totals -----------------------------------------------------------------------------------
def test_village_totals_split_each_total_by_a_simplex():
    cm = village_totals.conditioned()
    plan = cm.plan()
    assert "scatter-add" in _steps(plan) and plan.untouched == ["rate"], _steps(plan)
    assert all(str(s.support) == "Simplex()" for s in plan.schedule.theta.values())
    assert plan.schedule.n_theta == village_totals.LATENT_DIM - village_totals.OBSERVED_DIM
    n = 6
    x = _valid(*points_on_the_constraint(cm, {"income": RNG.gamma(3.0, 3.0, (n, 12)), "rate": RNG.gamma(2.0, 0.2, n)}))
    assert violation(cm, x) <= 1e-8
    totals = np.stack([np.bincount(village_totals.VILLAGE, row, village_totals.N_VILLAGES) for row in x["income"]])
    np.testing.assert_allclose(totals, np.broadcast_to(village_totals.TOTALS, totals.shape), rtol=1e-12)
    assert np.all(x["income"] > 0)


@pytest.mark.slow
def test_village_totals_posterior_is_gamma_dirichlet():
    cm = village_totals.conditioned()
    assert_posterior_matches(cm, village_totals.reference_moments(), ("income", "rate"))


def test_village_totals_reference_draws_match_the_closed_form():
    ref, draws = village_totals.reference_moments(), village_totals.reference_posterior(num_samples=20000)
    for name in ("income", "rate"):
        assert_mean(draws[name], ref[name]["mean"], sd=np.sqrt(ref[name]["var"]), what=name)


# --- stick_breaking_abundance ------------------------------------------------------------------------
def test_stick_breaking_abundance_solves_the_sticks_entry_by_entry():
    cm = stick_breaking_abundance.conditioned()
    plan = cm.plan()
    assert "entry by entry" in _steps(plan) and plan.untouched == ["alpha"], _steps(plan)
    assert plan.schedule.n_theta == 0
    n = 4
    x = _valid(*points_on_the_constraint(cm, {"v": RNG.beta(1.0, 2.0, (n, 6)), "alpha": RNG.gamma(2.0, 1.0, n)}))
    assert violation(cm, x) <= 1e-8
    np.testing.assert_allclose(x["v"], np.broadcast_to(stick_breaking_abundance.sticks(), x["v"].shape), rtol=1e-12)


def test_stick_breaking_abundance_density_of_alpha_is_the_conjugate_gamma():
    """The conditioned model's log density in α differs from the Gamma(a₀ + K, b₀ − Σ log(1 − v)) log
    density by a constant (a deterministic check of the posterior, no sampling)."""
    from numpyro.infer.util import log_density
    from scipy import stats

    cm = stick_breaking_abundance.conditioned()
    ref = stick_breaking_abundance.reference_moments()["alpha"]
    shape, rate = ref["mean"] ** 2 / ref["var"], ref["mean"] / ref["var"]
    alphas = np.array([0.3, 1.0, 2.5, 6.0])
    ld = np.asarray(jax.jit(jax.vmap(lambda a: log_density(cm, (), {}, {"alpha": a})[0]))(jnp.asarray(alphas)))
    want = stats.gamma.logpdf(alphas, shape, scale=1.0 / rate)
    np.testing.assert_allclose(ld - ld[0], want - want[0], rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_stick_breaking_abundance_posterior_of_the_concentration():
    cm = stick_breaking_abundance.conditioned()
    assert_posterior_matches(cm, stick_breaking_abundance.reference_moments(), ("alpha",))


# --- the comparison suite's hand-written inverses ----------------------------------------------------
def _log_densities(model, points):
    from numpyro.infer.util import log_density

    return np.asarray(jax.jit(jax.vmap(lambda p: log_density(model, (), {}, p)[0]))(points))


def test_hand_written_enzyme_inverse_has_ppinv_s_density():
    """experiments/baselines.hand_enzyme_assay (S and log|dS/dv| by hand) and the conditioned model are
    the same density over (Vmax, Km) up to a constant, and −∞ where Vmax ≤ v."""
    from experiments.baselines import hand_enzyme_assay

    points = {"Vmax": jnp.asarray([1.2, 1.9, 2.2, 2.6, 3.5]), "Km": jnp.asarray([0.5, 0.6, 0.8, 1.1, 2.0])}
    ours, hand = _log_densities(enzyme_assay.conditioned(), points), _log_densities(hand_enzyme_assay(), points)
    assert np.isneginf(ours[0]) and np.isneginf(hand[0])  # Vmax below the measured rate: no preimage
    np.testing.assert_allclose(ours[1:] - ours[1], hand[1:] - hand[1], rtol=1e-10, atol=1e-9)


@pytest.mark.slow  # conditioning isotope_mixing: 5-10 s (module docstring)
def test_hand_written_mixing_inverse_has_ppinv_s_density():
    from experiments.baselines import hand_isotope_mixing

    source = isotope_mixing.SOURCE_MEAN + isotope_mixing.SOURCE_SD * RNG.normal(size=(8, 3, 2))
    points = {"source": jnp.asarray(source)}
    ours, hand = _log_densities(isotope_mixing.conditioned(free=isotope_mixing.FREE), points), _log_densities(hand_isotope_mixing(), points)
    inside = np.isfinite(hand)
    assert inside.sum() >= 2
    np.testing.assert_array_equal(np.isfinite(ours), inside)
    np.testing.assert_allclose(ours[inside] - ours[inside][0], hand[inside] - hand[inside][0], rtol=1e-10, atol=1e-9)
