"""Numerical edges, precision, and tracer hygiene."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import ppinv
from models import lotka_volterra
from ppinv.testing import check_inverse


def product(a, b):
    return a * b


def test_theta_near_singular_point():
    """a·b = y with θ = a: as θ → 0, b = y/θ blows up but stays exact; θ = 0 is outside."""
    inv = ppinv.inverse(product, 1.0, 1.0)
    (name,) = inv.theta_spec
    for t in (1e-3, 1e-8, -1e-12):
        a, b = inv(2.0, {name: t})
        np.testing.assert_allclose(a * b, 2.0, rtol=1e-14)
        np.testing.assert_allclose(inv.log_abs_det_jacobian(2.0, {name: t}), -np.log(abs(t)), rtol=1e-12)
    assert float(inv.log_abs_det_jacobian(2.0, {name: 0.0})) == -np.inf
    g = jax.grad(lambda t: inv.log_abs_det_jacobian(2.0, {name: t}))(1e-8)
    assert bool(jnp.isfinite(g))


@pytest.mark.parametrize(
    "f,y,inside",
    [
        (jnp.sqrt, 0.0, False),  # √ at 0: a singular edge, excluded (finite gradients)
        (jnp.sqrt, 1e-300, True),
        (jnp.arcsin, np.pi / 2, True),  # asin's range edge: x = sin(π/2) = 1
        (jnp.sin, 1.0, False),  # sin observed at 1: the branch point, excluded
        (jnp.sin, 1.0 - 1e-15, True),
    ],
)
def test_domain_boundaries(f, y, inside):
    inv = ppinv.inverse(f, 0.5)
    theta = {n: jnp.zeros(s.shape, s.dtype) for n, s in inv.theta_spec.items()}
    ld = inv.log_abs_det_jacobian(y, theta)
    assert not bool(jnp.isnan(ld))
    assert bool(jnp.isfinite(ld)) == inside
    g = jax.grad(lambda v: jnp.where(jnp.isfinite(inv.log_abs_det_jacobian(v, theta)), inv.log_abs_det_jacobian(v, theta), 0.0))(jnp.asarray(y, jnp.float64))
    assert not bool(jnp.isnan(g))


def lotka_like(uz, un):
    return lotka_volterra.simulate(jnp.exp(-2 + uz), un, n_steps=un.size // 2)


@pytest.mark.parametrize("dtype,rtol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_precision(dtype, rtol):
    """float64: round-off ~1e-16; float32 stays float32 throughout, round-off ~1e-7."""
    uz = jnp.log(jnp.array([0.4, 0.005, 0.05, 0.001], dtype)) + 2
    un = jnp.asarray(np.random.RandomState(1234).normal(size=20), dtype)
    inv = ppinv.inverse(lotka_like, uz, un)
    y = lotka_like(uz, un)
    theta = inv.pgf(uz, un)
    x = inv(y, theta)
    assert all(v.dtype == dtype for v in x)
    assert all(v.dtype == dtype for v in theta.values() if jnp.issubdtype(v.dtype, jnp.floating))
    np.testing.assert_allclose(x[1], un, rtol=rtol * 100, atol=rtol * 100)
    np.testing.assert_allclose(lotka_like(*x), y, rtol=rtol)
    assert inv.log_abs_det_jacobian(y, theta).dtype == dtype


def test_float32_rules():
    report = check_inverse(lambda a, b, c: a * jnp.exp(b) + jnp.sin(c), *(jnp.float32(1.0),) * 3, n_points=10, rtol=3e-6, log_det_atol=1e-4)
    assert report.n_in_domain == 10


@pytest.mark.slow
def test_no_tracer_leaks():
    """The interpreter and the handler keep no tracers across traces."""

    def model():
        a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        numpyro.deterministic("y", jnp.stack([a * x[0] + x[1], jnp.sum(x)]))

    with jax.checking_leaks():
        inv = ppinv.inverse(lambda a, b: (a * jnp.exp(b), b * 2.0), 1.0, 1.0)
        theta = inv.pgf(1.0, 0.5)
        jax.jit(jax.vmap(inv, in_axes=(0, None)))((jnp.ones(2), jnp.ones(2)), theta)
        jax.grad(lambda y: inv.log_abs_det_jacobian((y, 1.0), theta))(1.0)
        cm = ppinv.condition(model, {"y": jnp.array([1.0, 0.5])})
        mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=20, num_samples=20, progress_bar=False)
        mcmc.run(jax.random.PRNGKey(0))
        assert np.all(np.isfinite(np.asarray(mcmc.get_samples()["x"])))
