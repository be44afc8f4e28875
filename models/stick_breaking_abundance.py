"""Species abundances in order of discovery under a stick-breaking (GEM) prior: the concentration from exact shares.

Model::

    alpha ~ Gamma(a₀, b₀)                                   (concentration: how even the community is)
    v[k] ~ Beta(1, alpha)          k = 1..6                  (stick-breaking fractions, plate)
    share[k] = v[k] · Π_{j<k} (1 − v[j])                     (observed exactly)

Under a Dirichlet-process community model the relative abundances of species,
listed in the order in which sampling discovers them (size-biased order), follow
the Griffiths–Engen–McCloskey law GEM(α): the stick-breaking construction above.
The shares of the first six species found are measured exactly (e.g. biomass
fractions of the whole sample); the rest of the stick, ``1 − Σ share``, belongs
to species not yet found.

What it shows: a triangular system. Each share is a product over all earlier
sticks, so no single relation can be undone alone; ppinv solves the recursion
entry by entry (``v₁ = share₁``, then ``v₂ = share₂ / (1 − v₁)``, …), with its
log|det| ``−Σ_k log Π_{j<k}(1 − v_j)``. Every ``v`` is fixed by the data, so no
θ is needed; ``alpha``, upstream of the sticks and untouched by the inverse, is
an ordinary sample site whose density includes the sticks' Beta terms.

Closed form: ``Beta(v; 1, α) = α (1 − v)^{α−1}``, so
``alpha | share ~ Gamma(a₀ + K, b₀ − Σ_k log(1 − v_k))`` with ``v`` the solved sticks.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

N_SPECIES = 6
ALPHA_PRIOR = (2.0, 1.0)  # Gamma(concentration, rate)
#: measured shares of the first six species found: sticks drawn with α = 2 (numpy seed 3), rounded
SHARE = np.array([0.096, 0.5293, 0.0321, 0.2452, 0.0291, 0.0215])


def model():
    alpha = numpyro.sample("alpha", dist.Gamma(*ALPHA_PRIOR))
    with numpyro.plate("species", N_SPECIES):
        v = numpyro.sample("v", dist.Beta(1.0, alpha))
    left_before = jnp.concatenate([jnp.ones(1), jnp.cumprod(1.0 - v)[:-1]])  # stick left before break k
    numpyro.deterministic("share", v * left_before)


DATA = {"share": SHARE}
LATENT_DIM = N_SPECIES  # the sticks; alpha (1 more) is untouched by the inverse
OBSERVED_DIM = N_SPECIES


def conditioned():
    """``ppinv.condition(model, DATA)``."""
    return ppinv.condition(model, DATA)


def sticks(share=SHARE):
    """The one preimage: ``v_k = share_k / (1 − Σ_{j<k} share_j)``."""
    share = np.asarray(share, float)
    return share / (1.0 - np.concatenate([[0.0], np.cumsum(share)[:-1]]))


def reference_moments(share=SHARE):
    """Closed-form posterior mean and variance of ``alpha`` (and the fixed sticks ``v``)."""
    v = sticks(share)
    a = ALPHA_PRIOR[0] + len(v)
    b = ALPHA_PRIOR[1] - np.sum(np.log1p(-v))
    return {"alpha": {"mean": a / b, "var": a / b**2}, "v": {"mean": v, "var": np.zeros_like(v)}}


def reference_posterior(rng_key=0, num_samples: int = 1000, share=SHARE):
    """Exact posterior draws ``{"alpha", "v"}``."""
    v = sticks(share)
    a = ALPHA_PRIOR[0] + len(v)
    b = ALPHA_PRIOR[1] - np.sum(np.log1p(-v))
    alpha = np.random.default_rng(rng_key).gamma(a, 1.0 / b, size=num_samples)
    return {"alpha": alpha, "v": np.tile(v, (num_samples, 1))}
