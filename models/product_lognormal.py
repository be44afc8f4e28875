"""Product of two log-normals observed exactly: the simplest curved constraint with a closed form.

Model::

    a ~ LogNormal(0, 1),  b ~ LogNormal(0, 1),   y = a · b   (observed exactly)

What it shows: a one-dimensional constraint manifold (a hyperbola branch in the
positive quadrant) and a single-rule inverse — ppinv frees ``a`` (θ inherits
its positive support) and solves ``b = y / θ`` with local log|det| = −log θ.

Closed form: ``log a + log b = log y`` with independent standard-normal logs, so

    log a | y  ~  N(log y / 2, 1/2),      log b = log y − log a.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

#: The observed product.
Y = 2.0
DATA = {"y": Y}
LATENT_DIM = 2
OBSERVED_DIM = 1


def model():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def data(y: float = Y):
    return {"y": y}


def conditioned(y: float = Y):
    """``ppinv.condition(model, {"y": y})``."""
    return ppinv.condition(model, data(y))


def reference_moments(y: float = Y):
    """Closed-form posterior moments of ``log a`` (and ``log b``, identical) given ``a·b = y``."""
    return {"log_a_mean": float(np.log(y) / 2), "log_a_var": 0.5}


def reference_posterior(rng_key=0, num_samples: int = 1000, y: float = Y):
    """Exact posterior draws ``{"a", "b"}`` (``log a ~ N(log y / 2, 1/2)``, ``b = y / a``)."""
    rng = np.random.default_rng(rng_key)
    la = rng.normal(np.log(y) / 2, np.sqrt(0.5), size=num_samples)
    return {"a": np.exp(la), "b": y / np.exp(la)}
