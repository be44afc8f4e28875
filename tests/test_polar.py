"""Polar pairs ``(r·cos t, r·sin t)`` observed together (ppinv/_polar.py)."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from scipy.stats import lognorm, norm

import ppinv
from ppinv.infer import InverseNUTS
from ppinv.testing import check_inverse
from tests.helpers import assert_mean, run_mcmc

TOL = dict(rtol=1e-9, log_det_atol=1e-8)


def polar(r, t):
    return r * jnp.cos(t), r * jnp.sin(t)


CASES = [
    ("radius positive", polar, (1.0, 1.0), (constraints.positive, None), {"period"}),
    ("radius signed", polar, (1.0, 1.0), None, {"period", "sign"}),
    ("scaled, shifted, swapped", lambda r, t: (jnp.sin(t) * r + 1.0, 2.0 * (jnp.cos(t) * r)), (1.0, 1.0), None,
     {"period", "sign"}),
    ("vectors", polar, (jnp.ones(3), jnp.ones(3)), (constraints.positive, None), {"period"}),
    ("with a third output", lambda r, t, z: (*polar(r, t), z + r), (1.0, 1.0, 1.0), (constraints.positive, None, None),
     {"period"}),
]


@pytest.mark.parametrize("name,f,args,support,kinds", CASES, ids=[c[0] for c in CASES])
def test_polar_pair(name, f, args, support, kinds):
    inv = ppinv.inverse(f, *args, support=support)
    assert {s.kind for s in inv.theta_spec.values()} == kinds
    report = check_inverse(f, *args, inv=inv, support=support, n_points=8, **TOL)
    assert report.n_in_domain == 8


def test_every_turn_and_sign_is_a_preimage():
    inv = ppinv.inverse(polar, 1.0, 1.0)
    y = polar(1.5, 0.4)
    seen = set()
    for k in (-2, 0, 3):
        for s in (0, 1):
            r, t = inv(y, {"polar_period": k, "polar_sign": s})
            np.testing.assert_allclose(polar(r, t), y, rtol=1e-12)
            seen.add((round(float(r), 9), round(float(t), 9)))
    assert len(seen) == 6


def test_origin_is_outside_the_domain():
    inv = ppinv.inverse(polar, 1.0, 1.0, support=(constraints.positive, None))
    assert not bool(inv.in_domain((0.0, 0.0), {"polar_period": 0}))
    assert inv.log_abs_det_jacobian((0.0, 0.0), {"polar_period": 0}) == -jnp.inf


U, V = 0.8, -0.6


def shifted_polar_model():
    s = numpyro.sample("s", dist.Normal(0.0, 1.0))
    r = numpyro.sample("r", dist.LogNormal(0.0, 0.5))
    t = numpyro.sample("t", dist.Normal(0.0, 1.5))
    numpyro.deterministic("u", r * jnp.cos(t) + s)
    numpyro.deterministic("v", r * jnp.sin(t))


def _reference_s_r():
    """Posterior means of s and r: quadrature over s, a sum over the turns k of t."""
    s = np.linspace(-7, 7, 20001)
    r = np.hypot(U - s, V)
    base = np.arctan2(V, U - s)
    w = norm.pdf(s) * lognorm(0.5).pdf(r) / r * sum(norm(0, 1.5).pdf(base + 2 * np.pi * k) for k in range(-6, 7))
    w /= w.sum()
    return float(np.sum(w * s)), float(np.sum(w * r))


@pytest.mark.slow
def test_posterior_through_a_polar_pair():
    """θ = (s, the turn k of t); the density −log r and the Gibbs moves over k are exact."""
    cm = ppinv.condition(shifted_polar_model, {"u": U, "v": V})
    mcmc = run_mcmc(InverseNUTS(cm), num_warmup=400, num_samples=2000, num_chains=2, chain_method="vectorized")
    samples = mcmc.get_samples(group_by_chain=True)
    assert ppinv.diagnostics.constraint_violation(cm, mcmc.get_samples()) < 1e-12
    s_mean, r_mean = _reference_s_r()
    assert_mean(samples["s"], s_mean, chains=True)
    assert_mean(samples["r"], r_mean, chains=True)
