"""Simulation-based calibration of ppinv.condition + InverseNUTS / InverseMH.

Ranks of the true latent values among posterior draws must be uniform (χ²).
Each model's components are tested at level 0.01 / (number of components), so
a correctly calibrated sampler fails a test about once in a hundred runs of
the whole file, and a miscalibrated one (wrong density, wrong Jacobian, a
missed branch) fails reliably: the ranks of a sampler with a wrong log|det|
are far from uniform.
"""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

from ppinv.calibration import simulation_based_calibration
from ppinv.infer import InverseMH, InverseNUTS


def product(y=None):
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.sample("y", dist.Delta(a * b), obs=y)


def signed_square(y=None):
    """Two preimages ±√y: a discrete sign θ updated by Gibbs steps."""
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    numpyro.sample("y", dist.Delta(x * x), obs=y)


def square_plus_noise(y=None):
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Delta(x * x + s), obs=y)


def sine(y=None):
    """Several periods: an unbounded integer θ moved by ±1 Metropolis steps."""
    x = numpyro.sample("x", dist.Normal(0.0, 2.0))
    numpyro.sample("y", dist.Delta(jnp.sin(x)), obs=y)


def linear_vector(y=None):
    """A vector latent observed through a 2×4 map: a null-space θ."""
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
    a = jnp.array([[1.0, -1.0, 0.5, 2.0], [0.0, 1.0, 1.0, -1.0]])
    numpyro.sample("y", dist.Delta(a @ x, event_dim=1), obs=y)


def gamma_sum(y=None):
    """Positive summands: a simplex θ."""
    x = numpyro.sample("x", dist.Gamma(jnp.array([1.0, 2.0, 3.0]), 1.0).to_event(1))
    numpyro.sample("y", dist.Delta(jnp.sum(x)), obs=y)


def kepler(y=None):
    """Kepler's equation: E solved numerically from θ = e (a monotone solve, no closed form)."""
    e = numpyro.sample("e", dist.Beta(2.0, 5.0))
    E = numpyro.sample("E", dist.Uniform(0.0, 6.283185307179586))
    numpyro.sample("y", dist.Delta(E - e * jnp.sin(E)), obs=y)


def _check(result):
    n_components = sum(p.size for p in result.pvalues.values())
    assert result.min_pvalue > 0.01 / n_components, result.pvalues


@pytest.mark.slow
@pytest.mark.parametrize("model", [product, signed_square], ids=["product", "signed_square"])
def test_sbc_small(model):
    _check(simulation_based_calibration(model, "y", num_replications=80, num_warmup=300, num_samples=30, thin=3))


SLOW = [
    (product, InverseNUTS),
    (signed_square, InverseNUTS),
    # θ = x, and s = y − x² must stay positive: a hard wall in θ-space where the density
    # is largest. NUTS diverges there constantly and mixes too slowly for SBC's short
    # chains (see experiments/REPORT.md); the random-walk kernel calibrates.
    (square_plus_noise, InverseMH),
    (sine, InverseNUTS),
    (sine, InverseMH),
    (linear_vector, InverseNUTS),
    (gamma_sum, InverseNUTS),
    (kepler, InverseNUTS),
]


@pytest.mark.slow
@pytest.mark.parametrize("model,kernel", SLOW, ids=[f"{m.__name__}-{k.__name__}" for m, k in SLOW])
def test_sbc(model, kernel):
    kw = dict(num_replications=300, num_warmup=600, num_samples=50, thin=5)
    if kernel is InverseMH:
        kw.update(num_warmup=1500, thin=20)
    if model is kepler:
        kw.update(condition_kwargs={"free": ["e"]})
    _check(simulation_based_calibration(model, "y", kernel=kernel, **kw))
