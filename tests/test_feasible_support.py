"""θ supports narrowed to the feasible set (ppinv/geometry/feasible.py, conditioning/feasible.py).

The interval enclosures must hold every value at points of their boxes; the periodicity proof
must tell 2π-periodic flags from others; a narrowed θ must cover exactly the certified feasible
set (its edges against closed forms), keep the inverse sound, its PGF, log|det| and gradients
exact at points near both edges, give the conditioned density of the closed form on the whole
set, and be used only at the values it was found at.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.util import log_density

import ppinv
from models import arm
from ppinv.geometry.enclosure import Box, enclose
from ppinv.geometry.periodic import is_periodic
from ppinv.testing import check_conditioned, dense_log_abs_det

L1, L2, L3 = arm.LENGTHS[3]
PX, PY = arm.TARGET[3]


def _arm_arc():
    """The feasible q₀ of the 3-link arm: the last two links reach the target from the first one's end."""
    half = np.arccos((PX**2 + PY**2 + L1**2 - (L2 + L3) ** 2) / (2 * L1 * np.hypot(PX, PY)))
    return np.arctan2(PY, PX) - half, np.arctan2(PY, PX) + half


@pytest.fixture(scope="module")
def arm_model():
    cm = ppinv.condition(arm.make_model(3), arm.data(3))
    return cm, cm.plan()


def _circle():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a * a + b * b)


@pytest.fixture(scope="module")
def circle_model():
    cm = ppinv.condition(_circle, {"y": 2.0})
    return cm, cm.plan()


# --- the tools ------------------------------------------------------------------------------------
def test_enclosures_hold_the_values_at_points_of_their_boxes():
    def f(x, k):
        c = jnp.clip(jnp.cos(x[0]) * x[1], -1.0, 1.0)
        u = jnp.arccos(c) + jnp.arctan2(x[1] - 0.3, x[0]) * k
        v = jnp.where(x[0] > 0.2, jnp.sqrt(jnp.abs(x[1])), jnp.log1p(x[0] ** 2)) / (2.0 + jnp.sin(x[1]))
        w = jnp.cumsum(jnp.concatenate([x, x[::-1] ** 3]))[1:3]
        return jnp.stack([u, v, jnp.exp(-x[0]) * x[1], jnp.tanh(x @ jnp.array([1.5, -2.0]))]), w

    program = jax.make_jaxpr(f)(jnp.zeros(2), 0.0)
    rng = np.random.default_rng(0)
    lo = rng.uniform(-2, 2, (40, 2))
    hi = lo + rng.uniform(0, 1.5, (40, 2)) * rng.choice([1e-6, 0.1, 1.0], (40, 1))
    k = np.full(40, 1.0)
    outs = enclose(program, [Box(lo, hi), Box(k, k)])
    for cell in range(40):
        pts = lo[cell] + (hi[cell] - lo[cell]) * rng.uniform(size=(200, 2))
        pts = np.concatenate([pts, [lo[cell], hi[cell]]])
        values = jax.vmap(lambda p: f(p, 1.0))(jnp.asarray(pts))
        for box, val in zip(outs, values):
            val = np.asarray(val)
            assert np.all((box.lo[cell] - 1e-12 <= val) & (val <= box.hi[cell] + 1e-12)), (cell, box.lo[cell], box.hi[cell])


def test_a_flag_is_2pi_periodic_only_where_t_enters_through_periodic_functions():
    def program(f):
        return jax.make_jaxpr(f)(jnp.zeros(1), 0)

    assert is_periodic(program(lambda t, k: (jnp.cos(t) > 0.3) & jnp.all(jnp.isfinite(t))))
    assert is_periodic(program(lambda t, k: jnp.sin(2 * t[0] - 1.0 + jnp.pi * k) < jnp.cos(t - jnp.ones(1) * 3)))
    assert is_periodic(program(lambda t, k: jnp.isfinite(jnp.concatenate([t, -t + 2.0]) * 3.0).all()))
    assert not is_periodic(program(lambda t, k: jnp.sin(t / 2) > 0))  # period 4π
    assert not is_periodic(program(lambda t, k: t[0] > 0))
    assert not is_periodic(program(lambda t, k: jnp.cos(t * k) > 0))  # k unknown: no whole multiple
    assert not is_periodic(program(lambda t, k: jnp.floor(t) == 0))


# --- an interval: a square root's domain ------------------------------------------------------------
def test_a_solved_square_root_narrows_theta_to_its_domain(circle_model):
    cm, plan = circle_model
    ((name, (a, b, periodic)),) = plan.feasible.items()
    assert not periodic and plan.theta_sites[name] == "a"
    assert abs(a + np.sqrt(2.0)) < 1e-10 and abs(b - np.sqrt(2.0)) < 1e-10
    assert a <= -np.sqrt(2.0) and b >= np.sqrt(2.0)  # never cut: the kept set holds the edges
    support = plan.schedule.theta[name].support
    assert isinstance(support, constraints.interval)
    sign = next(n for n, s in plan.schedule.theta.items() if s.discrete)
    for t in (a + 1e-9, a + 1e-4, 0.3, b - 1e-4, b - 1e-9):
        for s in (0, 1):
            theta = {name: jnp.asarray(t), sign: jnp.asarray(s)}
            x, log_det, ok = plan.invert([], theta)
            assert bool(ok)
            assert abs(float(x["a"] ** 2 + x["b"] ** 2) - 2.0) < 1e-9  # sound
            back = plan.pgf([], x)
            assert abs(float(back[name]) - t) < 1e-12 and int(back[sign]) == s  # PGF round trip
            dense = dense_log_abs_det(plan.inverse, [jnp.asarray(2.0)], theta)
            assert abs(float(log_det) - float(dense)) < 1e-6 * max(1.0, abs(float(dense)))
    outside = {name: jnp.asarray(b + 1e-3), sign: jnp.asarray(0)}
    assert not bool(plan.invert([], outside)[2])


def test_the_narrowed_circle_has_the_arcsine_density_and_exact_gradients(circle_model):
    cm, plan = circle_model
    ((name, (a, b, _)),) = plan.feasible.items()
    sign = next(n for n, s in plan.schedule.theta.items() if s.discrete)
    ts = np.concatenate([a + np.geomspace(1e-8, 0.1, 5), np.linspace(-1.0, 1.0, 5), b - np.geomspace(1e-8, 0.1, 5)])
    for s in (0, 1):
        got = np.array([float(log_density(cm, (), {}, {"a": jnp.asarray(t), plan.theta_sites[sign]: jnp.asarray(s)})[0])
                        for t in ts])
        closed = -0.5 * np.log(2.0 - ts**2)  # a | a² + b² = 2 is the arcsine law on [−√2, √2]
        assert np.ptp(got - closed) < 1e-6
    near_edges = [{"a": jnp.asarray(t), "b": jnp.sqrt(2.0 - jnp.asarray(t) ** 2)} for t in (a + 1e-4, b - 1e-3)]
    assert check_conditioned(cm, latents=near_edges, n_points=1, perturb=0.1).ok


def test_a_half_line_feasible_set_becomes_a_half_line_support():
    def model():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.deterministic("y", a * a + jnp.exp(b))  # b free, a = ±√(y − eˢ): b ≤ log y

    plan = ppinv.condition(model, {"y": 2.0}).plan()
    ((name, (lo, hi, periodic)),) = plan.feasible.items()
    assert plan.theta_sites[name] == "b" and lo == -np.inf and not periodic
    assert np.log(2.0) <= hi < np.log(2.0) + 1e-10
    assert isinstance(plan.schedule.theta[name].support, constraints.less_than)


# --- what keeps θ as it was ----------------------------------------------------------------------------
def test_a_union_of_intervals_or_a_flag_without_bounds_keeps_the_support():
    def union():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.deterministic("y", a * a - jnp.exp(b))  # a free: b = log(a² − y), |a| > 1

    def no_bounds():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.deterministic("y", a + jnp.tanh(b))  # a free: b = atanh(y − a), no bounds for atanh

    for model, data in ((union, {"y": 1.0}), (no_bounds, {"y": 0.5})):
        plan = ppinv.condition(model, data, free=["a"]).plan()
        assert plan.feasible is None and plan.wide is None
        assert plan.schedule.theta["a"].support is constraints.real or str(plan.schedule.theta["a"].support) == "Real()"


# --- the arm: a periodic feasible set ----------------------------------------------------------------
def _arm_theta(plan, s, elbow=0, period=0, turn1=0, turn2=0):
    names = {v: k for k, v in plan.theta_sites.items()}
    return {names["theta_cumsum_value"]: jnp.asarray([s]), names["theta_cumsum_value_period"]: jnp.asarray(period),
            names["theta_two_link_elbow"]: jnp.asarray(elbow), names["theta_two_link_turn1"]: jnp.asarray(turn1),
            names["theta_two_link_turn2"]: jnp.asarray(turn2)}


def test_the_arm_samples_the_first_joint_on_its_reachable_arc(arm_model):
    cm, plan = arm_model
    ((name, (a, b, periodic)),) = plan.feasible.items()
    lo, hi = _arm_arc()
    assert periodic and abs(a - lo) < 1e-10 and abs(b - hi) < 1e-10 and a <= lo and hi <= b
    assert isinstance(plan.schedule.theta[name].support, constraints.interval)
    assert plan.schedule.theta[f"{name}_period"].discrete
    y = [jnp.asarray(arm.TARGET[3])]
    for s in (a + 1e-9, a + 1e-5, 0.5 * (a + b), b - 1e-5, b - 1e-9):
        for elbow, period, turn in ((0, 0, 0), (1, 0, 1), (0, -1, 0), (1, 1, -1)):
            theta = _arm_theta(plan, s, elbow, period, turn, -turn)
            x, log_det, ok = plan.invert([], theta)
            assert bool(ok)
            q = x["angles"]
            assert np.allclose(arm.forward(q, arm.LENGTHS[3]), arm.TARGET[3], atol=1e-9)  # sound
            assert abs(float(q[0]) - (s + 2 * np.pi * period)) < 1e-12
            back = plan.pgf([], x)
            for n in theta:  # the PGF gives back every θ: the arc point and its period too
                assert np.allclose(back[n], theta[n], atol=1e-9), (n, back[n], theta[n])
            dense = dense_log_abs_det(plan.inverse, y, theta)
            assert abs(float(log_det) - float(dense)) < 1e-6 * max(1.0, abs(float(dense)))


def test_the_arm_density_on_the_arc_is_the_closed_form_and_its_gradient_exact(arm_model):
    cm, plan = arm_model
    ((_, (a, b, _)),) = plan.feasible.items()
    ss = np.concatenate([a + np.geomspace(1e-7, 0.1, 4), np.linspace(a + 0.2, b - 0.2, 4), b - np.geomspace(1e-7, 0.1, 4)])

    def normal(x):
        return -0.5 * (x / arm.SCALE) ** 2

    for elbow in (0, 1):
        got, closed = [], []
        for s in ss:
            theta = _arm_theta(plan, s, elbow)
            q = np.asarray(plan.invert([], theta)[0]["angles"])
            got.append(float(log_density(cm, (), {}, {plan.theta_sites[n]: v for n, v in theta.items()})[0]))
            closed.append(sum(normal(v) for v in q) - np.log(abs(L2 * L3 * np.sin(q[2]))))
        assert np.ptp(np.array(got) - np.array(closed)) < 1e-6
    near_edges = [{"angles": plan.invert([], _arm_theta(plan, s, e))[0]["angles"]} for s, e in ((a + 1e-4, 0), (b - 1e-4, 1))]
    assert check_conditioned(cm, latents=near_edges, n_points=1, perturb=0.1).ok


def test_other_observations_or_traced_ones_run_the_plan_as_it_was(arm_model):
    cm, plan = arm_model

    def theta_support(model):
        tr = handlers.trace(handlers.seed(model, 0)).get_trace()
        return tr["theta_cumsum_value"]["fn"].support, "theta_cumsum_value_period" in tr

    support, has_period = theta_support(cm)
    assert has_period and "Interval" in str(support)
    other = handlers.condition(cm, {"end": np.array([1.2, 1.4])})
    support, has_period = theta_support(other)
    assert not has_period and "Interval" not in str(support)

    def traced(end):
        tr = handlers.trace(handlers.seed(handlers.condition(cm, {"end": end}), 0)).get_trace()
        return "theta_cumsum_value_period" in tr

    box = []
    jax.make_jaxpr(lambda e: box.append(traced(e)) or e)(jnp.asarray(arm.TARGET[3]))
    assert box == [False]


@pytest.mark.slow
def test_the_arm_posterior_with_the_arc_support_matches_quadrature_without_divergences(arm_model):
    from numpyro.infer import MCMC

    from tests.test_joint_chain import _arm_posterior_by_quadrature

    cm, _ = arm_model
    mean, sd, up = _arm_posterior_by_quadrature()
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=500, num_samples=1000, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("diverging",))
    q = np.asarray(mcmc.get_samples(group_by_chain=True)["angles"])
    assert np.mean(np.asarray(mcmc.get_extra_fields()["diverging"])) < 0.01
    ess = float(numpyro.diagnostics.effective_sample_size(q[..., 0]))
    assert abs(q[..., 0].mean() - mean) < 4 * sd / np.sqrt(ess), (q[..., 0].mean(), mean, sd, ess)
    up_frac = float(np.mean(np.sin(q[..., 2]) > 0))
    assert abs(up_frac - up) < 4 * np.sqrt(up * (1 - up) / min(ess, q[..., 0].size)) + 0.02, (up_frac, up)


# --- several continuous θ: each narrowed to its projection ---------------------------------------------
Y_TOTAL = 0.7


def logistic_plus_cube():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jax.nn.sigmoid(a + b) + c**3)  # θ = (c, a), b = logit(y − c³) − a


def _total_reference():
    """E and sd of a and c by quadrature over (c, a): c on (∛(y − 1), ∛y), b solved."""
    from scipy import stats

    c = np.linspace(np.cbrt(Y_TOTAL - 1), np.cbrt(Y_TOTAL), 3001)[1:-1]
    a = np.linspace(-8, 8, 1201)
    cc, aa = np.meshgrid(c, a, indexing="ij")
    z = Y_TOTAL - cc**3
    w = stats.norm.pdf(aa) * stats.norm.pdf(np.log(z / (1 - z)) - aa) * stats.norm.pdf(cc) / (z * (1 - z))
    w /= w.sum()
    out = {}
    for name, v in (("a", aa), ("c", cc)):
        m = float((w * v).sum())
        out[name] = (m, float(np.sqrt((w * (v - m) ** 2).sum())))
    return out


def test_a_theta_whose_wall_the_other_theta_do_not_move_is_narrowed_beside_them():
    """θ = (c, a): the logit's domain 0 < y − c³ < 1 bounds c alone, whatever a is; a keeps ℝ."""
    plan = ppinv.condition(logistic_plus_cube, {"y": Y_TOTAL}).plan()
    assert set(plan.theta_sites.values()) == {"c", "a"}
    names = {v: k for k, v in plan.theta_sites.items()}
    (narrowed,) = plan.feasible
    assert plan.theta_sites[narrowed] == "c"
    a, b, periodic = plan.feasible[narrowed]
    assert not periodic and abs(a - np.cbrt(Y_TOTAL - 1)) < 1e-10 and abs(b - np.cbrt(Y_TOTAL)) < 1e-10
    assert a <= np.cbrt(Y_TOTAL - 1) and b >= np.cbrt(Y_TOTAL)  # never cut: the kept set holds the edges
    assert plan.schedule.theta[names["a"]].support is constraints.real
    y = [jnp.asarray(Y_TOTAL)]
    for c in (a + 1e-9, a + 1e-4, 0.1, b - 1e-4, b - 1e-9):
        for t in (-3.0, 0.5):
            theta = {names["c"]: jnp.asarray(c), names["a"]: jnp.asarray(t)}
            x, log_det, ok = plan.invert([], theta)
            assert bool(ok)
            assert abs(float(jax.nn.sigmoid(x["a"] + x["b"]) + x["c"] ** 3) - Y_TOTAL) < 1e-9  # sound
            back = plan.pgf([], x)
            assert all(abs(float(back[n]) - float(theta[n])) < 1e-9 for n in theta)  # PGF round trip
            dense = dense_log_abs_det(plan.inverse, y, theta)
            assert abs(float(log_det) - float(dense)) < 1e-6 * max(1.0, abs(float(dense)))
    near_edges = [{"a": jnp.asarray(0.3), "c": jnp.asarray(c)} for c in (a + 1e-3, b - 1e-3)]
    for lat in near_edges:
        z = Y_TOTAL - lat["c"] ** 3
        lat["b"] = jnp.log(z / (1 - z)) - lat["a"]
    assert check_conditioned(logistic_plus_cube, {"y": Y_TOTAL}, latents=near_edges, n_points=1, perturb=0.1).ok


@pytest.mark.slow
def test_logistic_plus_cube_samples_without_divergences_against_quadrature():
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC

    mcmc = MCMC(ppinv.infer.InverseNUTS(ppinv.condition(logistic_plus_cube, {"y": Y_TOTAL})), num_warmup=500,
                num_samples=1500, num_chains=2, chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("diverging",))
    assert int(np.sum(mcmc.get_extra_fields()["diverging"])) <= 3  # 314 per 1,000 with c on ℝ
    samples = mcmc.get_samples(group_by_chain=True)
    for name, (mean, sd) in _total_reference().items():
        draws = np.asarray(samples[name])
        mcse = sd / np.sqrt(float(effective_sample_size(draws)))
        assert abs(draws.mean() - mean) < 4 * mcse, (name, draws.mean(), mean, mcse)
