"""θ chosen by geometry at condition time (``ppinv/theta_choice.py``): the total schedule over one
with a wall, the default kept when it is already total, and the posterior unchanged by the choice.

The wall program: ``y = σ(a + b) + c³`` with ``a, b, c ~ N(0, 1)`` observed at ``y = 1.3``. The
scheduler's own order frees ``c`` and solves ``b = logit(y − c³) − a``, which needs
``y − c³ ∈ (0, 1)``: only ``c ∈ (0.3^⅓, 1.3^⅓)`` is valid, a wall on both sides of a narrow band.
Freeing ``a`` and ``b`` instead solves ``c = cbrt(y − σ(a + b))``, valid everywhere. The posterior
is compared with a quadrature over ``(a, b)`` of the hand-derived density
``φ(a) φ(b) φ(c) / (3 c²)`` (``|∂c/∂y|``) that uses none of ppinv.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density
from scipy import stats

import ppinv
from models import kepler
from tests.helpers import assert_mean, run_mcmc

Y = 1.3
GRID = np.linspace(-6.0, 6.0, 241)


def wall_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jax.nn.sigmoid(a + b) + c**3)


def sum_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 2.0))
    numpyro.deterministic("y", a + b)


def product_model():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("y", a * b)


def _reference_moments():
    """E[a], E[c] given y by quadrature over (a, b), with no ppinv."""
    a, b = np.meshgrid(GRID, GRID, indexing="ij")
    c = np.cbrt(Y - 1.0 / (1.0 + np.exp(-(a + b))))
    w = stats.norm.pdf(a) * stats.norm.pdf(b) * stats.norm.pdf(c) / (3.0 * c**2)
    w /= w.sum()
    return {"a": float(np.sum(w * a)), "c": float(np.sum(w * c))}


def _quadrature_moments(cm, grids):
    """E[a], E[c] under ``cm``'s own density on a grid of its θ sites (a product of 1-d grids)."""
    plan = cm.plan()
    sites = list(plan.theta_sites.values())
    mesh = np.meshgrid(*[grids[s] for s in sites], indexing="ij")
    points = {s: jnp.asarray(m.ravel()) for s, m in zip(sites, mesh)}

    def at(values):
        ld = log_density(cm, (), {}, values)[0]
        x, _, _ = plan.invert([], {n: values[s] for n, s in plan.theta_sites.items()})
        return ld, x["a"], x["c"]

    ld, a, c = (np.asarray(v) for v in jax.jit(jax.vmap(at))(points))
    w = np.exp(ld - np.max(ld))
    w /= w.sum()
    return {"a": float(np.sum(w * a)), "c": float(np.sum(w * c))}


def test_the_total_schedule_is_chosen_over_a_logit_wall():
    cm = ppinv.condition(wall_model, {"y": Y})
    plan = cm.plan()
    choice = plan.theta_choice
    assert choice.changed, str(choice)
    assert sorted(plan.theta_sites.values()) == ["a", "b"]
    assert "logistic" not in " ".join(line for line in plan.schedule.describe().splitlines() if "solve" in line)
    default = choice.candidates[0]
    assert default.valid < 0.3 and choice.chosen.valid == 1.0
    assert "logistic" in default.schedule.describe()
    # sound: every θ maps onto the observation
    theta = {"a": jnp.linspace(-3.0, 3.0, 7), "b": jnp.linspace(2.0, -2.0, 7)}
    x, _, ok = jax.vmap(lambda t: plan.invert([], t))(theta)
    assert bool(jnp.all(ok))
    np.testing.assert_allclose(jax.nn.sigmoid(x["a"] + x["b"]) + x["c"] ** 3, Y, rtol=1e-12)


def test_the_choice_does_not_change_the_posterior():
    """Both charts' own densities integrate to the hand-derived posterior's moments."""
    ref = _reference_moments()
    chosen = ppinv.condition(wall_model, {"y": Y})
    before = ppinv.condition(wall_model, {"y": Y}, choose_theta=False)
    assert sorted(before.plan().theta_sites.values()) == ["a", "c"] and before.plan().theta_choice is None
    band = np.linspace((Y - 1.0) ** (1 / 3), Y ** (1 / 3), 801)[1:-1]  # the valid c of the default chart
    got_chosen = _quadrature_moments(chosen, {"a": GRID, "b": GRID})
    got_before = _quadrature_moments(before, {"a": GRID, "c": band})
    for k in ("a", "c"):
        assert got_chosen[k] == pytest.approx(ref[k], abs=2e-3)
        assert got_before[k] == pytest.approx(ref[k], abs=2e-3)


def test_a_total_default_is_kept_without_measuring():
    cm = ppinv.condition(sum_model, {"y": 0.5})
    choice = cm.plan().theta_choice
    assert not choice.changed and len(choice.candidates) == 1
    assert math.isnan(choice.chosen.valid)  # nothing drawn or compiled
    assert "no wall" in choice.reason


def test_a_support_the_inverse_keeps_is_no_wall():
    """b = y / a must stay positive; with y = 2 > 0 and a a positive θ it always does (image rules
    prove it), so the default is total and kept, nothing measured."""
    cm = ppinv.condition(product_model, {"y": 2.0})
    choice = cm.plan().theta_choice
    assert not choice.changed and math.isnan(choice.chosen.valid), str(choice)
    assert "rule out" in choice.reason
    assert list(cm.plan().theta_sites.values()) == list(
        ppinv.condition(product_model, {"y": 2.0}, choose_theta=False).plan().theta_sites.values())
    assert choice.chosen.walls == 0


def test_free_stays_first():
    """``free=`` names θ before any choice: the alternatives only add to it."""
    cm = ppinv.condition(wall_model, {"y": Y}, free=["c"])
    plan = cm.plan()
    assert "c" in plan.theta_sites.values()
    assert all(c.free[:1] == ("c",) for c in plan.theta_choice.candidates)


def test_kepler_needs_no_free():
    """The default frees e (E solved by the monotone solve); its density integrates to the reference."""
    cm = kepler.conditioned()
    plan = cm.plan()
    assert list(plan.theta_sites.values()) == ["e"]
    assert plan.theta_choice.changed and plan.theta_choice.candidates[0].valid < 0.3
    e = jnp.linspace(0.0, 1.0, 2001)[1:-1]

    def at(value):
        x, _, _ = plan.invert([], {"e": value})
        return log_density(cm, (), {}, {"e": value})[0], x["E"]

    ld, E = (np.asarray(v) for v in jax.jit(jax.vmap(at))(e))
    w = np.exp(ld - ld.max())
    w /= w.sum()
    ref = kepler.reference_moments()
    assert float(np.sum(w * np.asarray(e))) == pytest.approx(ref["e"]["mean"], abs=1e-4)
    assert float(np.sum(w * E)) == pytest.approx(ref["E"]["mean"], abs=1e-4)


@pytest.mark.slow
def test_nuts_on_the_chosen_schedule_matches_the_reference():
    cm = ppinv.condition(wall_model, {"y": Y})
    mcmc = run_mcmc(ppinv.infer.InverseNUTS(cm), num_warmup=300, num_samples=600, num_chains=2,
                    chain_method="vectorized")
    s = mcmc.get_samples(group_by_chain=True)
    assert int(np.sum(mcmc.get_extra_fields()["diverging"])) <= 3
    ref = _reference_moments()
    for k in ("a", "c"):
        assert_mean(s[k], ref[k], chains=True)


@pytest.mark.slow
def test_benchmark_script_quick(tmp_path):
    """experiments/theta_choice.py --quick on Kepler: the three variants, every output written."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "theta_choice.py"
    spec = importlib.util.spec_from_file_location("ppinv_experiments_theta_choice", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (row,) = script.main(["--quick", "--models", "kepler", "--out", str(tmp_path)])
    runs = row["runs"]
    assert runs["before"]["theta"] == ["E"] and runs["now"]["theta"] == ["e"] and runs["free=['e']"]["same_as"] == "now"
    assert runs["now"]["divergences_per_1000"] < runs["before"]["divergences_per_1000"]
    assert (tmp_path / "theta_choice_quick.md").stat().st_size > 0


def test_many_separate_sites_keep_the_default_unmeasured():
    """Drawing the prior compiles every site's sampler: above MAX_MEASURED_SITES the choice is not
    measured (nothing is drawn or compiled) and the scheduler's θ is kept."""
    import numpyro
    import numpyro.distributions as dist

    from ppinv.theta_choice import MAX_MEASURED_SITES

    n = MAX_MEASURED_SITES + 4

    def model():
        total = sum(numpyro.sample(f"x{i}", dist.Gamma(2.0, 1.0)) for i in range(n))
        numpyro.deterministic("total", total)

    plan = ppinv.condition(model, {"total": 2.0 * n}).plan()
    assert "not measured" in plan.theta_choice.reason
    assert plan.schedule.n_theta == n - 1


def test_binding_totals_free_both_constants_by_themselves():
    """Five latents, three exact totals: the scheduler frees R and A (2 % of prior draws valid, no
    start found); sets of as many latents as the default frees are candidates too, and the choice
    takes the dissociation constants, solving the free concentrations jointly (every draw valid)."""
    from models import binding_equilibrium
    from ppinv.infer import InverseNUTS

    cm = ppinv.condition(binding_equilibrium.model, binding_equilibrium.DATA)
    plan = cm.plan()
    assert sorted(plan.theta_sites.values()) == ["K_A", "K_B"], plan.theta_choice
    assert plan.theta_choice.chosen.valid > 0.9 > 0.1 > plan.theta_choice.candidates[0].valid
    kernel = InverseNUTS(cm)
    state = kernel.init(jax.random.PRNGKey(0), 5, None, (), {})
    x = kernel.postprocess_fn((), {})(state.z)
    ra, rb = binding_equilibrium.complexes(x["R"], x["A"], x["B"], x["K_A"], x["K_B"])
    totals = binding_equilibrium.TOTALS  # the start is sound: the original model's totals are the data
    np.testing.assert_allclose([x["R"] + ra + rb, x["A"] + ra, x["B"] + rb],
                               [totals["R_total"], totals["A_total"], totals["B_total"]], rtol=1e-9)
