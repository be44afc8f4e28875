"""θ geometry: diagnostics that name walls, folds and singular points where divergences
concentrate; a warning for discrete θ stuck on one branch; feasible-set θ for bounded summands."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints as C
from numpyro.infer import MCMC
from scipy import stats

import ppinv
from ppinv.diagnostics import geometry_report
from ppinv.testing import check_inverse

Y_WALL = 0.3


def wall_model():
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    p = numpyro.sample("p", dist.Uniform(0.0, 1.0))
    numpyro.deterministic("y", c + p)


def shared_wall_model():
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    d = numpyro.sample("d", dist.Normal(0.0, 1.0))
    p = numpyro.sample("p", dist.Uniform(0.0, 1.0))
    numpyro.deterministic("y", c + d + p)  # θ = (c, d): 0 < y − c − d < 1 bounds neither on its own


def fold_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a**2 + b)


def product_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def square_model(mu):
    a = numpyro.sample("a", dist.Normal(mu, 1.0))
    numpyro.deterministic("y", a * a)


def unit_sum_model():
    x = numpyro.sample("x", dist.Uniform(0.0, 1.0))
    y = numpyro.sample("y", dist.Uniform(0.0, 1.0))
    numpyro.deterministic("s", x + y)


def _grouped(**arrays):
    return {k: jnp.asarray(v).reshape(2, -1) for k, v in arrays.items()}


def _diverging_near(margin, width, rng, n_random=2):
    """Divergent transitions where ``margin`` is below ``width`` (and a few elsewhere)."""
    d = margin < width
    d[rng.choice(d.size, n_random, replace=False)] = True
    return d.reshape(2, -1)


# --- diagnostics -------------------------------------------------------------------------------------------
def test_wall_of_a_solved_support_is_named():
    """p = y − c must stay in (0, 1): with c freed, the wall is p's support, made by the add."""
    rng = np.random.default_rng(0)
    cm = ppinv.condition(wall_model, {"y": Y_WALL}, free=["c"])
    # c | y is N(0, 1) truncated to (y − 1, y)
    c = stats.truncnorm.rvs(Y_WALL - 1, Y_WALL, size=400, random_state=rng)
    p = Y_WALL - c
    diverging = _diverging_near(np.minimum(p, 1 - p), 0.03, rng)
    report = geometry_report(conditioned=cm, samples=_grouped(c=c, p=p), diverging=diverging)
    (wall,) = report.concentrated
    assert wall.kind == "wall" and "add(" in wall.relation and "support" in wall.what
    assert "test_geometry.py" in wall.relation  # the source line of the relation
    assert wall.margin_divergent < wall.margin_other
    assert "divergences concentrate here" in str(report)


def test_no_divergences_nothing_concentrated():
    rng = np.random.default_rng(1)
    cm = ppinv.condition(wall_model, {"y": Y_WALL}, free=["c"])
    c = stats.truncnorm.rvs(Y_WALL - 1, Y_WALL, size=200, random_state=rng)
    report = geometry_report(conditioned=cm, samples=_grouped(c=c, p=Y_WALL - c))
    assert report.n_divergent == 0 and not report.concentrated and len(report.features) == 1


def test_divergences_unrelated_to_the_wall_are_not_blamed_on_it():
    rng = np.random.default_rng(2)
    cm = ppinv.condition(wall_model, {"y": Y_WALL}, free=["c"])
    c = stats.truncnorm.rvs(Y_WALL - 1, Y_WALL, size=400, random_state=rng)
    diverging = np.zeros(400, bool)
    diverging[rng.choice(400, 20, replace=False)] = True
    report = geometry_report(conditioned=cm, samples=_grouped(c=c, p=Y_WALL - c), diverging=diverging.reshape(2, -1))
    assert report.n_divergent == 20 and not report.concentrated


def test_fold_of_a_square_is_named():
    """b freed: a = ±√(y − b), two branches meeting where b reaches y."""
    rng = np.random.default_rng(3)
    cm = ppinv.condition(fold_model, {"y": 0.5}, free=["b"])
    a = rng.normal(size=400)
    b = 0.5 - a**2
    diverging = _diverging_near(np.abs(a), 0.08, rng)
    report = geometry_report(conditioned=cm, samples=_grouped(a=a, b=b), diverging=diverging)
    (fold,) = report.concentrated
    assert fold.kind == "fold" and ("integer_pow" in fold.relation or "square" in fold.relation)


def test_singular_product_is_named():
    """a freed: b = y / a is singular where a reaches 0."""
    rng = np.random.default_rng(4)
    cm = ppinv.condition(product_model, {"y": 0.2}, free=["a"])
    a = rng.normal(size=400)
    diverging = _diverging_near(np.abs(a), 0.05, rng)
    report = geometry_report(conditioned=cm, samples=_grouped(a=a, b=0.2 / a), diverging=diverging)
    (singular,) = report.concentrated
    assert singular.kind == "singular" and "mul(" in singular.relation


# --- discrete θ stuck on one branch -----------------------------------------------------------------------
def _square_samples(signs):
    return {"a": jnp.asarray(np.asarray(signs, float))}


def test_stuck_branch_warns_naming_site_and_chain():
    """y = a² with a ~ N(0.3, 1): the branches a = ±1 hold 65 % and 35 %; chain 0 never leaves +1."""
    cm = ppinv.condition(lambda: square_model(0.3), {"y": 1.0})
    (site,) = [s for n, s in cm.plan().theta_sites.items() if cm.plan().schedule.theta[n].discrete]
    signs = np.stack([np.ones(50), np.where(np.arange(50) % 3 == 0, -1.0, 1.0)])
    with pytest.warns(UserWarning, match=rf"'{site}'.*chain 0"):
        report = geometry_report(conditioned=cm, samples=_square_samples(signs))
    (stuck,) = report.stuck
    # the exact branch weight of −1 at y = 1
    w_minus = 1 / (1 + math.exp(2 * 0.3))
    assert stuck.chain == 0 and stuck.other_mass == pytest.approx(w_minus, abs=0.02)


def test_mixing_branches_do_not_warn():
    cm = ppinv.condition(lambda: square_model(0.3), {"y": 1.0})
    signs = np.where(np.arange(100).reshape(2, 50) % 3 == 0, -1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = geometry_report(conditioned=cm, samples=_square_samples(signs))
    assert not report.stuck


def test_branch_without_mass_does_not_warn():
    """a ~ N(3, 1), y = 4: the branch a = −2 holds e⁻¹² of the mass; staying at +2 is right."""
    cm = ppinv.condition(lambda: square_model(3.0), {"y": 4.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = geometry_report(conditioned=cm, samples={"a": jnp.full((2, 30), 2.0)})
    assert not report.stuck


# --- feasible-set θ ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "f, supports",
    [
        (lambda x, y: x + y, {"x": C.unit_interval, "y": C.unit_interval}),
        (lambda x, y: x - y, {"x": C.unit_interval, "y": C.interval(-1.0, 2.0)}),
        (lambda x, y: x + y, {"x": C.positive, "y": C.positive}),
        (lambda x, y: x - y, {"x": C.positive, "y": C.positive}),
        (lambda x, y: y - x, {"x": C.greater_than(-1.0), "y": C.less_than(2.0)}),
    ],
)
def test_feasible_split_is_exact(f, supports):
    """Soundness, PGF round trip, log|det| against the dense Jacobian, derivatives."""
    inv = ppinv.inverse(f, jnp.array([0.3, 0.6]), jnp.array([0.4, 0.9]), support=supports)
    (spec,) = inv.schedule.theta.values()
    assert spec.kind == "feasible"
    report = check_inverse(f, jnp.array([0.3, 0.6]), jnp.array([0.4, 0.9]), support=supports, inv=inv,
                           n_points=4, grad_points=2)
    assert report.ok


def test_one_bounded_summand_is_freed_itself():
    """x real, y in (0, 3): freeing y leaves no wall, and θ keeps y's name."""
    inv = ppinv.inverse(lambda x, y: x + y, 0.5, 0.5, support={"x": C.real, "y": C.interval(0.0, 3.0)})
    assert [s.kind for s in inv.schedule.theta.values()] == ["value"]


def test_feasible_interval_of_unit_summands():
    """x + y = s on unit intervals: x = lo + (hi − lo)·θ on (max(0, s − 1), min(1, s))."""
    inv = ppinv.inverse(lambda x, y: x + y, 0.5, 0.5, support={"x": C.unit_interval, "y": C.unit_interval})
    (name,) = inv.schedule.theta
    for s, (lo, hi) in ((1.3, (0.3, 1.0)), (0.4, (0.0, 0.4))):
        for u in (0.1, 0.25, 0.9):
            (x, y), log_det = inv.with_log_det(s, {name: jnp.asarray(u)})
            assert float(x) == pytest.approx(lo + (hi - lo) * u) and float(x + y) == pytest.approx(s)
            assert float(log_det) == pytest.approx(math.log(hi - lo))
            assert float(inv.pgf(x, y)[name]) == pytest.approx(u)


def test_feasible_split_keeps_a_users_free_choice():
    cm = ppinv.condition(unit_sum_model, {"s": 1.3}, free=["x"])
    assert list(cm.plan().theta_sites.values()) == ["x"]


@pytest.mark.slow
def test_feasible_theta_samples_without_divergences():
    """x + y = 1.3 with uniform x, y: x | s is uniform on (0.3, 1); NUTS meets no wall."""
    cm = ppinv.condition(unit_sum_model, {"s": 1.3})
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=150, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    assert int(np.sum(mcmc.get_extra_fields()["diverging"])) == 0
    x = np.asarray(mcmc.get_samples()["x"])
    # ~400 autocorrelated draws: the KS distance stays well below 0.15 (p ≈ 1e-8 for iid draws)
    assert stats.kstest(x, stats.uniform(0.3, 0.7).cdf).statistic < 0.15
    assert x.min() > 0.3 and x.max() < 1.0


@pytest.mark.slow
def test_nuts_on_a_wall_names_it_and_feasible_theta_removes_it():
    def run(cm):
        mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=200, num_samples=200, num_chains=2,
                    chain_method="sequential", progress_bar=False)
        mcmc.run(jax.random.PRNGKey(0))
        return mcmc

    # a wall no θ's feasible set removes: it bounds c + d, not c or d alone
    walled = ppinv.condition(shared_wall_model, {"y": Y_WALL}, free=["c", "d"])
    assert walled.plan().feasible is None
    report = geometry_report(run(walled))
    assert report.n_divergent > 20
    (wall,) = report.concentrated
    assert "add(" in wall.relation and "p" in wall.what
    default = geometry_report(run(ppinv.condition(shared_wall_model, {"y": Y_WALL})))
    assert default.n_divergent == 0 and not default.concentrated
