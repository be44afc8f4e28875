"""Branch jumps (``ppinv/infer/_branch_moves.py``): the sweep scores the paths it samples, the move
alone leaves the exact posterior invariant (branch frequencies and a continuous moment against
quadrature, for a sign θ and for an unbounded period θ), and InverseNUTS visits a two-branch
model's branches in proportion (slow)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

import ppinv
from ppinv.infer._branch_moves import branch_jump, sweep_path

Y = 2.0


def sign_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.5, 1.0))
    numpyro.deterministic("y", b * b + a)


def period_model():
    a = numpyro.sample("a", dist.Normal(0.0, 0.5))
    x = numpyro.sample("x", dist.Normal(1.0, 3.0))
    numpyro.deterministic("y", jnp.sin(x) + a)


def _sign_reference():
    """P(b < 0 | y) and E[a | y] by quadrature, with b = ±r, a = y − r² (r > 0: the density in r is smooth)."""
    dens = lambda r, s: stats.norm.pdf(Y - r * r) * stats.norm.pdf(s * r, 0.5, 1.0)  # noqa: E731
    mass = {s: integrate.quad(dens, 0, np.inf, args=(s,))[0] for s in (1.0, -1.0)}
    moment = sum(integrate.quad(lambda r, s=s: (Y - r * r) * dens(r, s), 0, np.inf)[0] for s in mass)
    total = sum(mass.values())
    return mass[-1.0] / total, moment / total


def _period_reference(y=0.3, periods=range(-8, 9)):
    """P(k | y) and E[a | y]: x = πk + (−1)ᵏ asin(y − a) for a in (y − 1, y + 1), weighted by the
    prior density at (a, x) times |∂x/∂y| = 1/√(1 − (y − a)²)."""

    def dens(a, k):
        s = y - a
        x = np.pi * k + (-1.0) ** k * np.arcsin(s)
        return stats.norm.pdf(a, 0, 0.5) * stats.norm.pdf(x, 1.0, 3.0) / np.sqrt(1 - s * s)

    mass = {k: integrate.quad(dens, y - 1, y + 1, args=(k,), limit=200)[0] for k in periods}
    moment = sum(integrate.quad(lambda a, k=k: a * dens(a, k), y - 1, y + 1, limit=200)[0] for k in periods)
    total = sum(mass.values())
    return {k: m / total for k, m in mass.items()}, moment / total


def _target(cm):
    return ppinv.infer.InverseNUTS(cm).setup(0)


def _run_move_alone(target, start_z, start_d, n, seed):
    def step(carry, key):
        z, d, _ = branch_jump(target, key, *carry)
        return (z, d), (z, d)

    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    _, (zs, ds) = jax.jit(lambda k: jax.lax.scan(step, (start_z, start_d), k))(keys)
    return zs, ds


def _constrained(target, zs, site):
    """A continuous site's values (the chain moves its unconstrained coordinate)."""
    return np.asarray(target.transforms[site](zs[site]))


def _mcse(series):
    """Batch-means MCSE of the mean of one chain."""
    size = max(1, int(np.sqrt(len(series))))
    means = np.asarray(series)[: len(series) // size * size].reshape(-1, size).mean(1)
    return means.std(ddof=1) / np.sqrt(len(means))


def _value_of(cm, latents, site):
    return int(cm.theta_of({k: jnp.asarray(v) for k, v in latents.items()}, batch_ndims=0)[site])


def test_the_sweep_scores_the_path_it_samples():
    cm = ppinv.condition(period_model, {"y": 0.3}, free=["a"])
    target = _target(cm)
    (site,) = target.discrete_sites
    z = {"a": jnp.asarray(0.1)}
    start = {site: jnp.asarray(0, target.discrete_dtype[site])}
    sample = jax.jit(lambda key: sweep_path(target, z, start, key=key))
    score = jax.jit(lambda end: sweep_path(target, z, start, end=end))
    for seed in range(3):
        end, log_p = sample(jax.random.PRNGKey(seed))
        again, scored = score(end)
        assert int(again[site]) == int(end[site]) and abs(int(end[site])) <= 1
        np.testing.assert_allclose(float(scored), float(log_p), rtol=1e-12)
    # the scores of the three reachable ends sum to one; an end two periods away is unreachable
    ends = lambda k: {site: jnp.asarray(k, target.discrete_dtype[site])}  # noqa: E731
    total = sum(float(jnp.exp(score(ends(k))[1])) for k in (-1, 0, 1))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    assert float(score(ends(2))[1]) == -np.inf


def test_branch_jumps_alone_keep_the_sign_posterior():
    cm = ppinv.condition(sign_model, {"y": Y}, free=["a"])
    target = _target(cm)
    (site,) = target.discrete_sites
    negative = _value_of(cm, {"a": Y - 1.0, "b": -1.0}, site)
    p_negative, mean_a = _sign_reference()
    zs, ds = _run_move_alone(target, {"a": jnp.asarray(0.0)}, {site: jnp.asarray(1 - negative)}, 3000, seed=0)
    is_negative = np.asarray(ds[site]) == negative
    a = _constrained(target, zs, "a")
    assert abs(is_negative.mean() - p_negative) < 4 * _mcse(is_negative), (is_negative.mean(), p_negative)
    assert abs(a.mean() - mean_a) < 4 * _mcse(a), (a.mean(), mean_a)


def test_branch_jumps_alone_keep_the_period_posterior():
    cm = ppinv.condition(period_model, {"y": 0.3}, free=["a"])
    target = _target(cm)
    (site,) = target.discrete_sites
    masses, mean_a = _period_reference()
    zs, ds = _run_move_alone(target, {"a": jnp.asarray(0.0)}, {site: jnp.asarray(0)}, 3000, seed=1)
    k = np.asarray(ds[site])
    # the PGF's period count of x = πk + (−1)ᵏ asin(s) is k: check it once, then compare each period with mass
    assert _value_of(cm, {"a": 0.0, "x": 2 * np.pi + np.arcsin(0.3)}, site) == 2
    for period, mass in masses.items():
        if mass >= 0.01:
            seen = k == period
            assert abs(seen.mean() - mass) < 4 * max(_mcse(seen), np.sqrt(mass * (1 - mass) / len(k))), (period,
                                                                                                          seen.mean(),
                                                                                                          mass)
    a = _constrained(target, zs, "a")
    assert abs(a.mean() - mean_a) < 4 * _mcse(a), (a.mean(), mean_a)


@pytest.mark.slow
def test_inverse_nuts_visits_two_branches_in_proportion():
    from numpyro.infer import MCMC

    cm = ppinv.condition(sign_model, {"y": Y}, free=["a"])
    (site,) = _target(cm).discrete_sites
    negative = _value_of(cm, {"a": Y - 1.0, "b": -1.0}, site)
    p_negative, _ = _sign_reference()
    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=300, num_samples=1000, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(3))
    b = np.asarray(mcmc.get_samples(group_by_chain=True)["b"])
    assert _value_of(cm, {"a": Y - 1.0, "b": 1.0}, site) != negative
    series = (b < 0).astype(float)
    mcse = max(np.sqrt(np.mean([_mcse(c) ** 2 for c in series]) / len(series)),
               np.sqrt(p_negative * (1 - p_negative) / series.size))
    z = (series.mean() - p_negative) / mcse
    assert abs(z) <= 4, (series.mean(), p_negative, z)
