"""Three standard normals observed through a bilinear function: ``x₀ + x₁·x₂ = 1``.

Model::

    x₀, x₁, x₂ ~ N(0, 1)   (sites "x0", "x1", "x2"),     y = x₀ + x₁ x₂   observed exactly, y = 1

What it shows: the smallest curved constraint with a *sum* and a *product* in
it — a two-dimensional saddle-shaped surface in R³ (x₀ = y − x₁x₂). ppinv frees
``x₁, x₂`` (two real θ) and solves ``x₀ = y − x₁ x₂`` with local log|det| = 0,
which is also the inverse one would write by hand; so it is the benchmark for
"overlay vs hand-written inverse" (``experiments/compare.py``) and for the
README picture of a posterior on a constraint manifold.

The same model with ONE vector site
-----------------------------------
:func:`make_model` ``(vector=True)`` draws ``x ~ N(0, I₃)`` as a single vector site and
observes ``x[0] + x[1] * x[2]``. ppinv frees ``x[1]`` (through ``squeeze``) and solves the
rest jointly as a linear block with one null-space θ; the posterior is the same. The
scalar-site form is the default because its θ (``x₁, x₂``) are the ones a hand-written
inverse uses, which makes the overlay-vs-hand comparison like for like.

Reference (exact up to quadrature error): on the surface, in the (x₁, x₂)
chart, the conditional density is

    p(x₁, x₂ | y) ∝ N(y − x₁x₂; 0, 1) · N(x₁; 0, 1) · N(x₂; 0, 1)

(|det ∂x/∂(y, x₁, x₂)| = 1). :func:`reference_moments` integrates it on a grid
(error ≪ 1e-6); :func:`reference_posterior` draws from it exactly by
rejection from the prior of (x₁, x₂) (the bound N(·; 0, 1) ≤ 1/√(2π)).
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

Y = 1.0
DATA = {"y": Y}
LATENT_DIM = 3
OBSERVED_DIM = 1


def f(x0, x1, x2):
    return x0 + x1 * x2


def make_model(vector: bool = False):
    """The model with three scalar sites (default) or one vector site ``"x"`` (see the docstring)."""
    if vector:

        def model():
            x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            numpyro.deterministic("y", f(x[0], x[1], x[2]))

        model.__name__ = "bilinear_vector"
        return model

    def model():
        x0 = numpyro.sample("x0", dist.Normal(0.0, 1.0))
        x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
        x2 = numpyro.sample("x2", dist.Normal(0.0, 1.0))
        numpyro.deterministic("y", f(x0, x1, x2))

    model.__name__ = "bilinear"
    return model


model = make_model()


def data(y: float = Y):
    return {"y": y}


def conditioned(y: float = Y, vector: bool = False):
    """``ppinv.condition(make_model(vector), {"y": y})``."""
    return ppinv.condition(make_model(vector), data(y))


def _grid(y: float, half_width: float = 9.0, n: int = 1201):
    g = np.linspace(-half_width, half_width, n)
    x1, x2 = np.meshgrid(g, g, indexing="ij")
    x0 = y - x1 * x2
    logw = -0.5 * (x0**2 + x1**2 + x2**2)
    w = np.exp(logw - logw.max())
    return np.stack([x0, x1, x2]), w / w.sum()


def reference_moments(y: float = Y):
    """Posterior mean and variance of ``(x₀, x₁, x₂)`` (shape (3,) each), by quadrature over (x₁, x₂)."""
    xs, w = _grid(y)
    mean = np.array([np.sum(w * xs[i]) for i in range(3)])
    var = np.array([np.sum(w * (xs[i] - mean[i]) ** 2) for i in range(3)])
    return {"mean": mean, "var": var}


def reference_posterior(rng_key=0, num_samples: int = 1000, y: float = Y):
    """Exact posterior draws ``{"x0", "x1", "x2"}`` (``num_samples`` each) by rejection sampling."""
    rng = np.random.default_rng(rng_key)
    out = []
    while sum(len(o) for o in out) < num_samples:
        x12 = rng.normal(size=(4 * num_samples, 2))
        x0 = y - x12[:, 0] * x12[:, 1]
        keep = rng.uniform(size=len(x0)) < np.exp(-0.5 * x0**2)
        out.append(np.column_stack([x0, x12])[keep])
    x = np.concatenate(out)[:num_samples]
    return {"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2]}
