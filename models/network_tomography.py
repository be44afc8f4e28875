"""Network tomography: positive origin–destination flows seen only through link loads.

Model::

    x_j ~ LogNormal(μ, σ)   j = 1..n   (n = 100 OD flows, one vector site)
    y = A x                             (m = 30 link loads, observed exactly)

``A`` is a fixed 0/1 routing matrix (seeded): each flow crosses 2–4 of the
30 links, every link carries at least one flow, and ``A`` has full row rank.
The data are ``A x*`` for a prior draw ``x*`` (seeded).

What it shows: an underdetermined *linear* inverse problem whose posterior is
supported on a polytope — the affine (n − m = 70)-dimensional solution set of
``A x = y`` intersected with the positive orthant — so the exact conditional
has hard boundaries. The classic setting of Tebaldi & West (1998),
"Bayesian inference on network traffic using link count data". No closed form.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

N_FLOWS, N_LINKS = 100, 30
MU, SIGMA = 0.0, 1.0
ROUTING_SEED, DATA_SEED = 0, 1


def routing_matrix(n: int = N_FLOWS, m: int = N_LINKS, seed: int = ROUTING_SEED) -> np.ndarray:
    """``A`` (m × n, 0/1): each flow uses 2–4 distinct links; full row rank, no empty link."""
    rng = np.random.RandomState(seed)
    while True:
        A = np.zeros((m, n))
        for j in range(n):
            k = rng.randint(2, 5)
            A[rng.choice(m, size=k, replace=False), j] = 1.0
        if np.linalg.matrix_rank(A) == m and A.sum(axis=1).min() > 0:
            return A


def true_x(n: int = N_FLOWS, seed: int = DATA_SEED) -> np.ndarray:
    """The prior draw (fixed seed) that generated the data."""
    return np.exp(MU + SIGMA * np.random.RandomState(seed).normal(size=n))


def make_model(n: int = N_FLOWS, m: int = N_LINKS, seed: int = ROUTING_SEED):
    A = jnp.asarray(routing_matrix(n, m, seed))

    def model():
        x = numpyro.sample("x", dist.LogNormal(MU, SIGMA).expand([n]).to_event(1))
        numpyro.deterministic("y", A @ x)

    model.__name__ = f"network_tomography_{n}x{m}"
    return model


model = make_model()


def data(n: int = N_FLOWS, m: int = N_LINKS, seed: int = ROUTING_SEED):
    return {"y": routing_matrix(n, m, seed) @ true_x(n)}


DATA = data()
LATENT_DIM = N_FLOWS
OBSERVED_DIM = N_LINKS


def true_latents(n: int = N_FLOWS, m: int = N_LINKS, seed: int = ROUTING_SEED):
    """A point on the constraint set inside the support: the flows that generated the data."""
    return {"x": true_x(n)}


def conditioned(n: int = N_FLOWS, m: int = N_LINKS, seed: int = ROUTING_SEED):
    """``ppinv.condition(make_model(n, m), data(n, m))``."""
    return ppinv.condition(make_model(n, m, seed), data(n, m, seed))


def init_params(cm=None):
    """θ reproducing :func:`true_latents` — a valid start for MCMC (``mcmc.run(key, init_params=...)``).

    ppinv's default start (prior draw mapped through the PGF, 16 tries) fails
    here: projecting a 100-dimensional prior draw onto ``A x = y`` almost never
    stays in the positive orthant.
    """
    from . import pgf_init

    return pgf_init(cm if cm is not None else conditioned(), true_latents())
