"""Planar chains (``ppinv/joint/chain/``): joint angles from an observed end point.

Two-link inverse kinematics found by the mechanism in what users write — sums of
``l * cos(t)`` terms, or ``jnp.sum(lengths * jnp.cos(jnp.cumsum(q)))`` — checked for
soundness, PGF round trip (elbow and turn counts), log|det| against the dense Jacobian,
derivatives against finite differences, and the arm's posterior against quadrature.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from models import arm
from ppinv.testing import check_inverse

L1, L2 = 1.0, 0.8


def two_link(t1, t2):  # t2 relative to t1
    return L1 * jnp.cos(t1) + L2 * jnp.cos(t1 + t2), L1 * jnp.sin(t1) + L2 * jnp.sin(t1 + t2)


def test_two_link_arm_with_real_angles_has_an_elbow_and_two_turn_counts():
    inv = ppinv.inverse(two_link, 0.3, 0.9)
    assert inv.n_theta == 0 and "planar chain" in inv.describe()
    assert sorted(inv.theta_spec) == ["elbow", "turns_t1", "turns_t2"]
    check_inverse(two_link, 0.3, 0.9, n_points=4, dense_points=2)


def test_both_elbows_and_whole_turns_reach_the_same_point():
    inv = ppinv.inverse(two_link, 0.3, 0.9)
    y = two_link(0.3, 0.9)
    seen = set()
    for elbow in (0, 1):
        for turns in (-1, 0, 2):
            t = {"elbow": jnp.asarray(elbow), "turns_t1": jnp.asarray(turns), "turns_t2": jnp.asarray(-turns)}
            x = inv(y, t)
            np.testing.assert_allclose(two_link(*x), y, atol=1e-12)
            seen.add((elbow, round(float(x[0]), 9), round(float(x[1]), 9)))
    assert len(seen) == 6  # six different preimages


def test_angles_in_intervals_of_one_turn_need_no_turn_count():
    sup = [constraints.interval(-np.pi, np.pi), constraints.interval(0.0, np.pi)]
    inv = ppinv.inverse(two_link, 0.3, 0.9, support=sup)
    assert list(inv.theta_spec) == ["elbow"]
    check_inverse(two_link, 0.3, 0.9, support=sup, n_points=4, dense_points=2)
    y = two_link(0.3, 0.9)  # the elbow-down solution has t2 < 0, outside (0, π)
    assert not bool(inv.in_domain(y, {"elbow": jnp.asarray(1)}))


@pytest.mark.parametrize("support", [
    constraints.independent(constraints.interval(-np.pi, np.pi), 1),  # what to_event(1) of a Uniform gives
    constraints.interval(jnp.full(3, -np.pi), jnp.array([np.pi, np.pi, 3 * np.pi])),  # bounds per entry
], ids=["to_event", "per_entry"])
def test_joints_of_a_vector_read_their_turn_span_entry_by_entry(support):
    """A vector of joints on one turn each needs no turn count; an entry whose bounds span two turns
    keeps its own (entry 2 in the per-entry case, if it is one of the two solved)."""
    q = jnp.array([0.2, -0.5, 0.7])
    g = lambda q: arm.forward(q, arm.LENGTHS[3])  # noqa: E731
    inv = ppinv.inverse(g, q, support=[support])
    turns = [n for n in inv.theta_spec if n.startswith("turns")]
    wide = isinstance(support, constraints.interval)
    assert turns == (["turns_q_2"] if wide else [])
    check_inverse(g, q, support=[support], inv=inv, n_points=3, dense_points=1, grad_points=1)


def test_absolute_angles_a_base_offset_and_a_subtracted_link():
    def arm_from(base, a, b):  # base position known, angles absolute, one link pointing back
        return base[0] + 1.2 * jnp.cos(a) - 0.5 * jnp.cos(b), base[1] + 1.2 * jnp.sin(a) - 0.5 * jnp.sin(b)

    base = jnp.array([0.3, -0.2])
    f = lambda a, b: arm_from(base, a, b)  # noqa: E731
    check_inverse(f, 0.4, -1.1, n_points=4, dense_points=2)


@pytest.mark.parametrize("n", [3, pytest.param(5, marks=pytest.mark.slow)])
def test_the_direct_arm_model_is_inverted_by_the_mechanism(n):
    q = jnp.linspace(-0.4, 0.5, n)
    g = lambda q: arm.forward(q, arm.LENGTHS[n])  # noqa: E731
    inv = ppinv.inverse(g, q)
    assert inv.n_theta == n - 2 and "planar chain" in inv.describe()
    check_inverse(g, q, n_points=3, dense_points=1, grad_points=1)


def test_an_end_point_out_of_reach_is_outside_the_domain():
    inv = ppinv.inverse(two_link, 0.3, 0.9)
    theta = {"elbow": jnp.asarray(0), "turns_t1": jnp.asarray(0), "turns_t2": jnp.asarray(0)}
    assert not bool(inv.in_domain((2.0, 0.0), theta))  # |end| > L1 + L2


def test_angles_entering_with_other_multiples_are_refused():
    # t1 + 2 t2: not a chain of joints (the integer map is not unimodular) — refused, not half-solved
    f = lambda a, b: (jnp.cos(a) + 0.5 * jnp.cos(a + 2.0 * b), jnp.sin(a) + 0.5 * jnp.sin(a + 2.0 * b))  # noqa: E731
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(f, 0.3, 0.4)


def _arm_posterior_by_quadrature(n_grid=4001, turns=range(-2, 3)):
    """p(q₀ | end) and the elbow-up mass of the 3-link arm with q ~ N(0, σ²): for each q₀ the
    last two joints in closed form (both elbows, whole turns), weighted by 1/|l₂ l₃ sin q₂|."""
    l1, l2, l3 = arm.LENGTHS[3]
    px, py = arm.TARGET[3]
    q0 = np.linspace(-np.pi, np.pi, n_grid)
    dens = np.zeros((2, n_grid))

    def normal(x):
        return np.exp(-0.5 * (x / arm.SCALE) ** 2)

    for j, t in enumerate(q0):
        ux, uy = px - l1 * np.cos(t), py - l1 * np.sin(t)
        c = (ux * ux + uy * uy - l2 * l2 - l3 * l3) / (2 * l2 * l3)
        if abs(c) >= 1:
            continue
        for b, s in enumerate((1.0, -1.0)):
            d = s * np.arccos(c)
            a1 = np.arctan2(uy, ux) - np.arctan2(l3 * np.sin(d), l2 + l3 * np.cos(d))
            for k in turns:
                for m in turns:
                    q1, q2 = a1 - t + 2 * np.pi * k, d + 2 * np.pi * m
                    dens[b, j] += normal(t) * normal(q1) * normal(q2) / abs(l2 * l3 * np.sin(d))
    total = dens.sum(0)
    z = np.trapezoid(total, q0)
    mean = np.trapezoid(q0 * total, q0) / z
    sd = np.sqrt(np.trapezoid((q0 - mean) ** 2 * total, q0) / z)
    up = np.trapezoid(dens[0], q0) / z
    return mean, sd, up


@pytest.mark.slow
def test_direct_arm_posterior_matches_quadrature():
    from numpyro.infer import MCMC

    import numpyro

    mean, sd, up = _arm_posterior_by_quadrature()
    cm = ppinv.condition(arm.make_direct_model(3), arm.data(3))
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=500, num_samples=2000, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    q = np.asarray(mcmc.get_samples()["angles"])
    ess = float(numpyro.diagnostics.effective_sample_size(q[None, :, 0]))
    assert abs(q[:, 0].mean() - mean) < 4 * sd / np.sqrt(ess), (q[:, 0].mean(), mean, sd, ess)
    up_frac = float(np.mean(np.sin(q[:, 2]) > 0))
    assert abs(up_frac - up) < 4 * np.sqrt(up * (1 - up) / min(ess, len(q))) + 0.02, (up_frac, up)
