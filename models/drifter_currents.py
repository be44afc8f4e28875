"""Along-channel currents from drifters' GPS speeds, the cross-channel part known from a tide model.

Model (m/s)::

    mean ~ Normal(0.2, 0.5)                          (the channel's mean along-channel current)
    u[i] ~ Normal(mean, 0.3)   i = 1..3              (each drifter's along-channel velocity, either sign)
    speed = hypot(u, CROSS)                          (GPS speed over ground, observed exactly: SPEED)

``CROSS`` are the cross-channel velocities at the drifters (a tide model's output, known).

What a user writes::

    def model():
        mean = numpyro.sample("mean", dist.Normal(0.2, 0.5))
        with numpyro.plate("drifters", 3):
            u = numpyro.sample("u", dist.Normal(mean, 0.3))
        numpyro.deterministic("speed", jnp.hypot(u, CROSS))

    cm = ppinv.condition(model, {"speed": SPEED})

What it shows: the ``hypot`` rule (``ppinv/rules/functions.py``). Each speed fixes ``|u[i]|``
(``u = ±√(speed² − cross²)``, admissible where ``speed > |cross|``) but not the direction
of drift, so every drifter gets a sign θ (``hypot_sign``, Gibbs-updated by InverseNUTS), with
``log|∂u/∂speed| = log(speed/|u|)``; ``mean`` stays an ordinary sample site. The posterior
of ``mean`` is a mixture over the 2³ directions.

Closed form: with ``a = √(speed² − cross²)`` and directions ``s ∈ {±1}³``, ``u = s·a`` and
the Jacobian is the same for every ``s``, so ``P(s | data) ∝ N(s·a; 0.2·1, 0.3² I + 0.5² 11ᵀ)``
and ``mean | s`` is the conjugate Gaussian: :func:`reference_moments` sums the 8 terms.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

MEAN_PRIOR = (0.2, 0.5)
SPREAD = 0.3
#: cross-channel velocities at the three drifters (tide model), and their GPS speeds
CROSS = np.array([0.10, -0.25, 0.05])
SPEED = np.array([0.32, 0.30, 0.12])


def model():
    mean = numpyro.sample("mean", dist.Normal(*MEAN_PRIOR))
    with numpyro.plate("drifters", len(CROSS)):
        u = numpyro.sample("u", dist.Normal(mean, SPREAD))
    numpyro.deterministic("speed", jnp.hypot(u, jnp.asarray(CROSS)))


DATA = {"speed": SPEED}
LATENT_DIM = len(CROSS)  # u; mean (1 more) is untouched by the inverse
OBSERVED_DIM = len(CROSS)


def conditioned():
    """``ppinv.condition(model, DATA)``: ``u`` from the speeds up to a sign each (discrete θ)."""
    return ppinv.condition(model, DATA)


def along_channel_magnitudes(speed=SPEED):
    """``|u| = √(speed² − cross²)`` for each drifter."""
    return np.sqrt(np.asarray(speed) ** 2 - CROSS**2)


def reference_moments(speed=SPEED):
    """Exact posterior mean and variance of ``mean`` and ``u`` (the 8 directions summed)."""
    from scipy import stats  # only the reference needs scipy

    a, n = along_channel_magnitudes(speed), len(CROSS)
    m0, t0 = MEAN_PRIOR
    marginal_cov = SPREAD**2 * np.eye(n) + t0**2 * np.ones((n, n))
    weights, means, variances, us = [], [], [], []
    for signs in itertools.product((-1.0, 1.0), repeat=n):
        u = np.array(signs) * a
        weights.append(stats.multivariate_normal.logpdf(u, m0 * np.ones(n), marginal_cov))
        precision = 1 / t0**2 + n / SPREAD**2  # mean | u: conjugate Gaussian
        means.append((m0 / t0**2 + u.sum() / SPREAD**2) / precision)
        variances.append(1 / precision)
        us.append(u)
    w = np.exp(np.array(weights) - max(weights))
    w /= w.sum()
    means, variances, us = np.array(means), np.array(variances), np.array(us)
    mean_mean = w @ means
    mean_u = w @ us
    return {"mean": {"mean": mean_mean, "var": w @ (variances + (means - mean_mean) ** 2)},
            "u": {"mean": mean_u, "var": w @ (us - mean_u) ** 2}}
