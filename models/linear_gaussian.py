"""Standard-normal vector observed through an underdetermined linear map ``A x = y``.

Model::

    x ~ N(0, I_n),      y = A x   (A: m × n, full row rank, observed exactly)

What it shows: a flat (affine) constraint manifold of dimension ``n − m`` and a
joint linear-block inverse ``x = A⁺y + N θ`` (``N`` a null-space basis). It
scales: the default is ``n=5, m=2``; ``make_model(200, 50)`` is a
150-dimensional posterior.

Closed form: the Gaussian conditional on the affine subspace,

    x | A x = y  ~  N(A⁺ y,  I − A⁺ A).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

N_DEFAULT, M_DEFAULT = 5, 2
SEED = 0


def matrix(n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED) -> np.ndarray:
    """The fixed ``m × n`` observation matrix (standard-normal entries; full row rank a.s.)."""
    A = np.random.RandomState(seed).normal(size=(m, n)) / np.sqrt(n)
    assert np.linalg.matrix_rank(A) == m
    return A


def true_x(n: int = N_DEFAULT, seed: int = SEED) -> np.ndarray:
    """The latent draw (from the prior, fixed seed) that generated the data."""
    return np.random.RandomState(seed + 1).normal(size=n)


def make_model(n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED):
    A = jnp.asarray(matrix(n, m, seed))

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([n]).to_event(1))
        numpyro.deterministic("y", A @ x)

    model.__name__ = f"linear_gaussian_{n}x{m}"
    return model


model = make_model()


def data(n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED):
    """``{"y": A x*}`` with ``x*`` a prior draw (fixed seed)."""
    return {"y": matrix(n, m, seed) @ true_x(n, seed)}


DATA = data()


def latent_dim(n: int = N_DEFAULT, m: int = M_DEFAULT) -> int:
    return n


def observed_dim(n: int = N_DEFAULT, m: int = M_DEFAULT) -> int:
    return m


LATENT_DIM, OBSERVED_DIM = N_DEFAULT, M_DEFAULT


def conditioned(n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED):
    """``ppinv.condition(make_model(n, m), data(n, m))``."""
    return ppinv.condition(make_model(n, m, seed), data(n, m, seed))


def true_latents(n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED):
    """A point on the constraint set: the draw that generated the data."""
    return {"x": true_x(n, seed)}


def reference_moments(n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED):
    """Closed-form posterior mean ``A⁺y`` and covariance ``I − A⁺A``."""
    A = matrix(n, m, seed)
    pinv = np.linalg.pinv(A)
    return {"mean": pinv @ data(n, m, seed)["y"], "cov": np.eye(n) - pinv @ A}


def reference_posterior(rng_key=0, num_samples: int = 1000, n: int = N_DEFAULT, m: int = M_DEFAULT, seed: int = SEED):
    """Exact posterior draws ``{"x"}``: ``A⁺y + (I − A⁺A) z`` with ``z ~ N(0, I)``."""
    mom = reference_moments(n, m, seed)
    z = np.random.default_rng(rng_key).normal(size=(num_samples, n))
    return {"x": mom["mean"] + z @ mom["cov"]}  # the projector is symmetric and idempotent
