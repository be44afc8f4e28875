"""The tries a chain's start is picked from: each a prior draw mapped through the PGF and the
inverse, scored by the conditioned model's log density; with discrete θ, chains dealt out over
the branches found (:func:`pick_start`, :func:`start_point`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from numpyro.infer.util import log_density

from .prior import _latent_start

#: A branch whose best try is this far (in log density) below the best try of all is
#: treated as holding negligible mass: no chain is sent to start there.
BRANCH_LOG_DENSITY_GAP = math.log(1e3)


def _theta_of_try(cm, plan, rule, key, args, kwargs):
    """``(θ by leaf name, values of the conditioned model's sampled sites)`` of one try."""
    strategy, theta_fixed = rule.bind(plan)
    latents = _latent_start(cm, plan, strategy, key, args, kwargs)
    theta = dict(plan.pgf(plan.ctx_of(args, kwargs), latents))
    for n, v in theta_fixed.items():
        theta[n] = jnp.broadcast_to(jnp.asarray(v, theta[n].dtype), jnp.shape(theta[n]))
    values = {plan.theta_sites[n]: theta[n] for n in theta}
    values.update({n: latents[n] for n in plan.untouched})
    return theta, values


def _one_try(cm, plan, rule, key, args, kwargs):
    """One candidate start: ``(values by site, log density of the conditioned model)``."""
    _, values = _theta_of_try(cm, plan, rule, key, args, kwargs)
    ld, _ = log_density(cm, args, kwargs, values)
    return values, jnp.where(jnp.isfinite(ld), ld, -jnp.inf)


def _why_invalid(cm, plan, rule, key, args, kwargs):
    """``(inverse ok, solved latents inside their supports)`` of one try: why its density is zero."""
    theta, _ = _theta_of_try(cm, plan, rule, key, args, kwargs)
    x, _, ok = plan.invert(plan.ctx_of(args, kwargs), theta)
    in_support = jnp.asarray(True)
    for n, val in x.items():
        sup = plan.sites[n].support
        if sup is not None:  # NaN is a domain failure of the inverse, not a support violation
            inside = jnp.logical_or(jnp.all(sup.check(val)), jnp.any(jnp.isnan(val)))
            in_support = jnp.logical_and(in_support, inside)
    return ok, in_support


def discrete_theta_sites(plan):
    return [plan.theta_sites[n] for n, s in plan.schedule.theta.items() if s.discrete]


def _branch_codes(values, discrete_sites, num_tries):
    """The discrete θ of every try as one integer row per try (``None`` without discrete θ)."""
    if not discrete_sites:
        return None
    cols = [jnp.reshape(values[s], (num_tries, -1)).astype(jnp.int32) for s in discrete_sites]
    return jnp.concatenate(cols, axis=1)


def pick_start(lds, branches, chain_index, gap=BRANCH_LOG_DENSITY_GAP):
    """Index of the try a chain starts from.

    Without discrete θ (``branches is None``): the try of highest log density.
    Otherwise the tries are grouped by branch (equal rows of ``branches``); the
    branches whose best try is within ``gap`` of the best of all are ranked by
    that best log density, and chain ``i`` starts at the best try of branch
    ``i mod (number of such branches)``.
    """
    best = jnp.argmax(lds)
    if branches is None:
        return best
    n = lds.shape[0]
    same = jnp.all(branches[:, None, :] == branches[None, :, :], axis=-1)
    best_in_branch = jnp.max(jnp.where(same, lds[None, :], -jnp.inf), axis=1)
    is_best = same & (lds[None, :] == best_in_branch[:, None])
    representative = (jnp.argmax(is_best, axis=1) == jnp.arange(n)) & jnp.isfinite(lds)
    eligible = representative & (lds >= lds[best] - gap)
    n_eligible = jnp.sum(eligible)
    ranked = jnp.argsort(jnp.where(eligible, -lds, jnp.inf), stable=True)
    pick = ranked[jnp.mod(chain_index, jnp.maximum(n_eligible, 1))]
    return jnp.where(n_eligible > 0, pick, best)


def start_point(cm, plan, rule, key, chain_index, args, kwargs, num_tries):
    """The start of chain ``chain_index``: ``(values by site, log density, some try valid)``.

    The tries are made from ``jax.random.split(key, num_tries)``. A negative
    ``chain_index`` picks the branch at random (chains that cannot tell their
    index, such as those initialised inside ``pmap``).
    """
    keys = jax.random.split(key, num_tries)
    # a loop over the tries, not a vmap: the same program (and the same compile time) for
    # any num_tries, and a loop body XLA compiles faster than its 64-wide batched form
    values, lds = jax.lax.map(lambda k: _one_try(cm, plan, rule, k, args, kwargs), keys)
    branches = _branch_codes(values, discrete_theta_sites(plan), num_tries)
    if branches is not None:
        chain_index = jnp.asarray(chain_index)
        # no extra PRNG call for the random branch: the bits of a key are uniformly random
        bits = jnp.ravel(jax.random.key_data(keys[0]))[-1].astype(jnp.int32) & ((1 << 20) - 1)
        chain_index = jnp.where(chain_index < 0, bits, chain_index)
    idx = pick_start(lds, branches, chain_index)
    pick = jax.tree_util.tree_map(lambda v: v[idx], values)
    return pick, lds[idx], jnp.any(jnp.isfinite(lds))
