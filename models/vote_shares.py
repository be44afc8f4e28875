"""A pollster's house effects, learnt from an exactly known election result.

Model (three parties; party 0 is the baseline category, logit 0)::

    z ~ Normal(PRIOR_MEAN, 1)               (election-day logits of parties 1, 2 against party 0)
    house ~ Normal(0, 0.25)                 (the pollster's bias, in logits, for parties 1, 2)
    poll ~ Multinomial(N_POLL, softmax([0, z + house]))     (the pre-election poll: POLL)
    shares = softmax([0, z])                (the official result, observed exactly on parties 1, 2)

What a user writes::

    def model():
        z = numpyro.sample("z", dist.Normal(PRIOR_MEAN, 1.0).to_event(1))
        house = numpyro.sample("house", dist.Normal(0.0, 0.25).expand([2]).to_event(1))
        numpyro.sample("poll", dist.Multinomial(N_POLL, jax.nn.softmax(jnp.concatenate([jnp.zeros(1), z + house]))),
                       obs=POLL)
        numpyro.deterministic("result", jax.nn.softmax(jnp.concatenate([jnp.zeros(1), z]))[1:])

    cm = ppinv.condition(model, {"result": RESULT})

What it shows: a softmax head (``ppinv/joint/softmax.py``). No relation of the softmax can be
solved alone — the exponentials are divided by their own sum and shifted by their own
maximum — but as a block, with the baseline logit known (the ``concatenate`` with a zero),
the observed shares give the logits in closed form, ``z = log c₁,₂ − log c₀`` with
``c₀ = 1 − c₁ − c₂``, and ``log|det| = −Σ log c₁,₂ − log c₀``. No θ is left for ``z``: the
result pins the electorate, and the poll then measures the pollster alone, so
``house`` is the one sample site of the conditioned model (with the exact result's density
as a likelihood term that does not depend on it). Stock NumPyro ignores the condition on
the deterministic ``result``.

Reference: with ``z*`` the logits of the result,
``p(house | data) ∝ N(house; 0, 0.25²) · Multinomial(POLL; softmax([0, z* + house]))``,
integrated on a grid in two dimensions by :func:`reference_moments` (numpy only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

PARTIES = ("baseline", "party 1", "party 2")
PRIOR_MEAN = np.array([0.0, -0.5])
HOUSE_SD = 0.25
N_POLL = 800
#: the poll's respondents per party, and the official shares of parties 1 and 2 (party 0: 0.42)
POLL = np.array([310, 300, 190])
RESULT = np.array([0.35, 0.23])


def with_baseline(logits):
    """Logits of every party: the baseline's 0 in front."""
    return jnp.concatenate([jnp.zeros(1, logits.dtype), logits])


def model(poll=POLL):
    """The poll is observed (``poll=None`` simulates it)."""
    z = numpyro.sample("z", dist.Normal(jnp.asarray(PRIOR_MEAN), 1.0).to_event(1))
    house = numpyro.sample("house", dist.Normal(0.0, HOUSE_SD).expand([len(PARTIES) - 1]).to_event(1))
    poll_probs = jax.nn.softmax(with_baseline(z + house))
    numpyro.sample("poll", dist.Multinomial(N_POLL, poll_probs), obs=None if poll is None else jnp.asarray(poll))
    numpyro.deterministic("result", jax.nn.softmax(with_baseline(z))[1:])


DATA = {"result": RESULT}
LATENT_DIM = len(PARTIES) - 1  # the logits z; house (2 more) is untouched by the inverse
OBSERVED_DIM = len(PARTIES) - 1


def conditioned():
    """``ppinv.condition(model, DATA)``: ``z`` from the result's shares, ``house`` sampled."""
    return ppinv.condition(model, DATA)


def result_logits(result=RESULT):
    """The logits ``z*`` of an election result (shares of parties 1, 2) against the baseline."""
    result = np.asarray(result, float)
    return np.log(result) - np.log1p(-result.sum())


def _log_density(h1, h2, result=RESULT, poll=POLL):
    """Unnormalised log posterior of the house effects (arrays of equal shape)."""
    z = result_logits(result)
    logits = np.stack([np.zeros_like(h1), z[0] + h1, z[1] + h2], -1)
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return -0.5 * (h1**2 + h2**2) / HOUSE_SD**2 + log_probs @ np.asarray(poll, float)


def reference_moments(n: int = 401, result=RESULT, poll=POLL):
    """Posterior mean and variance of ``house`` (and of ``z``, a point mass) by quadrature."""
    h = np.linspace(-6 * HOUSE_SD, 6 * HOUSE_SD, n)  # the prior alone puts e⁻¹⁸ outside
    H1, H2 = np.meshgrid(h, h, indexing="ij")
    lp = _log_density(H1, H2, result, poll)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = np.array([np.sum(w * H1), np.sum(w * H2)])
    var = np.array([np.sum(w * (H1 - mean[0]) ** 2), np.sum(w * (H2 - mean[1]) ** 2)])
    return {"house": {"mean": mean, "var": var}, "z": {"mean": result_logits(result), "var": np.zeros(2)}}
