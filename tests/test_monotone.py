"""Strictly monotone relations with no closed-form inverse, solved numerically (ppinv/_monotone/)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppinv
from models import kepler
from ppinv.infer import InverseNUTS
from ppinv.testing import check_inverse
from tests.helpers import assert_mean, assert_var, run_mcmc

TOL = dict(rtol=1e-9, log_det_atol=1e-7)

CASES = [
    ("x + sin x", lambda x: x + jnp.sin(x), (1.0,), None),
    ("x^5 + x", lambda x: x**5 + x, (1.0,), None),
    ("kepler, e constant", lambda E: E - 0.7 * jnp.sin(E), (1.0,), None),
    ("kepler, e latent", lambda E, e: E - e * jnp.sin(E), (1.0, 0.5), {"e": constraints.interval(0.0, 1.0)}, "e"),
    ("x exp x, x > 0", lambda x: x * jnp.exp(x), (1.0,), {"x": constraints.positive}),
    ("log x + x, x > 0", lambda x: jnp.log(x) + x, (1.0,), {"x": constraints.positive}),
    ("(sqrt x + atan x) / 2, x in (0, 5)", lambda x: (jnp.sqrt(x) + jnp.arctan(x)) / 2.0, (1.0,),
     {"x": constraints.interval(0.0, 5.0)}),
    ("decreasing: -x^3 - tanh x", lambda x: -(x**3) - jnp.tanh(x), (1.0,), None),
    ("vector, elementwise", lambda x: 2 * x + jnp.tanh(x) + x**3, (jnp.ones(3),), None),
    ("after a freed input", lambda a, b: b * (a + jnp.sinh(a)), (1.0, 1.0), {"b": constraints.positive}, "b"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_monotone_relations_invert_exactly(case):
    """Soundness to round-off, the PGF round trip, log|det| against jacfwd (through the
    implicit-function derivative of the numeric solve)."""
    name, f, args, support, *free = case
    inv = ppinv.inverse(f, *args, support=support, free=free[0] if free else None)
    assert "numerically" in inv.describe()
    report = check_inverse(f, *args, inv=inv, support=support, n_points=8, **TOL)
    assert report.n_in_domain == 8


def test_far_and_extreme_observations():
    """The bracket grows by doubling, so huge and tiny targets are reached too."""
    f = lambda x: x + jnp.sin(x)  # noqa: E731
    inv = ppinv.inverse(f, 1.0)
    for y in (0.0, 1e-300, -3.7, 1e6, -1e12, 1e200):
        (x,) = inv(y, {})
        assert bool(inv.in_domain(y, {}))
        np.testing.assert_allclose(f(x), y, rtol=1e-12, atol=1e-300)


def test_outside_the_range_is_outside_the_domain():
    """tanh(x) + atan(x) is bounded: beyond its range there is no preimage, and the
    inverse says so (log|det| = −∞) instead of returning a wrong x."""
    f = lambda x: jnp.tanh(x) + jnp.arctan(x)  # noqa: E731
    inv = ppinv.inverse(f, 1.0)
    assert bool(inv.in_domain(2.0, {}))
    assert not bool(inv.in_domain(1 + math.pi / 2 + 0.1, {}))
    assert inv.log_abs_det_jacobian(3.0, {}) == -jnp.inf
    # positive support: log x + x covers the real line, x exp x only the positives
    inv2 = ppinv.inverse(lambda x: x * jnp.exp(x), 1.0, support=constraints.positive)
    assert not bool(inv2.in_domain(-0.5, {}))


def test_not_provably_monotone_is_refused_with_a_reason():
    """x + 2 sin x goes up and down: several preimages, which one numeric solve would miss."""
    with pytest.raises(ppinv.UnderdeterminedError, match="cannot show to be strictly monotone"):
        ppinv.inverse(lambda x: x + 2 * jnp.sin(x), 1.0)
    # Kepler with an eccentricity that may exceed 1 is not monotone either ...
    with pytest.raises(ppinv.UnderdeterminedError, match="monotone"):
        ppinv.inverse(lambda E, e: E - e * jnp.sin(E), 1.0, 0.5, free="e")
    # ... and is once the support says e ≤ 1
    ppinv.inverse(lambda E, e: E - e * jnp.sin(E), 1.0, 0.5, free="e", support={"e": constraints.unit_interval})


def test_float32():
    f = lambda x: x + jnp.sin(x)  # noqa: E731
    inv = ppinv.inverse(f, jnp.float32(1.0))
    (x,) = inv(jnp.float32(2.5), {})
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(f(x), 2.5, rtol=1e-6)


def test_gradients_through_the_solve():
    """d x / d y and d log|det| / d θ from the implicit function theorem match finite differences."""
    f = lambda E, e: E - e * jnp.sin(E)  # noqa: E731
    inv = ppinv.inverse(f, 1.0, 0.5, free="e", support={"e": constraints.unit_interval})

    def E_of(y, e):
        return inv(y, {"e": e})[0]

    g = jax.grad(E_of, argnums=(0, 1))(1.2, 0.4)
    h = 1e-6
    fd = ((E_of(1.2 + h, 0.4) - E_of(1.2 - h, 0.4)) / (2 * h), (E_of(1.2, 0.4 + h) - E_of(1.2, 0.4 - h)) / (2 * h))
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    ld = lambda e: inv.log_abs_det_jacobian(1.2, {"e": e})  # noqa: E731
    np.testing.assert_allclose(jax.grad(ld)(0.4), (ld(0.4 + h) - ld(0.4 - h)) / (2 * h), rtol=1e-5)


def test_free_picks_the_parametrisation():
    """free= makes the named inputs θ first; naming a non-input or too many is an error."""
    f = lambda E, e: E - e * jnp.sin(E)  # noqa: E731
    sup = {"e": constraints.unit_interval}
    assert list(ppinv.inverse(f, 1.0, 0.5, support=sup, free="e").theta_spec) == ["e"]
    assert list(ppinv.inverse(f, 1.0, 0.5, support=sup, free=[0]).theta_spec) == ["E"]
    with pytest.raises(ppinv.InputError, match="not an argument"):
        ppinv.inverse(f, 1.0, 0.5, free="eps")
    with pytest.raises(ppinv.UnderdeterminedError, match="cannot make"):
        ppinv.inverse(f, 1.0, 0.5, free=["e", "E"])
    with pytest.raises(ppinv.ConditionError, match="free='ee'.*Did you mean 'e'"):
        ppinv.condition(kepler.model, kepler.DATA, free=["ee"]).plan()


@pytest.mark.slow
def test_kepler_posterior_matches_quadrature():
    """InverseNUTS on Kepler's equation (θ = e, E solved numerically) against quadrature."""
    cm = kepler.conditioned()
    ref = kepler.reference_moments()
    mcmc = run_mcmc(InverseNUTS(cm), num_warmup=400, num_samples=1500, num_chains=2, chain_method="vectorized")
    s = mcmc.get_samples(group_by_chain=True)
    assert ppinv.diagnostics.constraint_violation(cm, mcmc.get_samples()) < 1e-12
    assert int(np.sum(mcmc.get_extra_fields()["diverging"])) == 0
    for name in ("e", "E"):
        assert_mean(s[name], ref[name]["mean"], sd=math.sqrt(ref[name]["var"]), chains=True)
        assert_var(s[name], ref[name]["var"], chains=True)
