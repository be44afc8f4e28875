"""Discrete θ that never moved: a site that kept one value over a whole chain while other branches
hold mass (from the other chains' draws, or the exact branch weights at this chain's draws)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .findings import StuckBranch


def _stuck_branches(conditioned, samples, args, kwargs, min_mass):
    plan = conditioned.plan(*args, **kwargs)
    discrete = {plan.theta_sites[n]: spec for n, spec in plan.schedule.theta.items() if spec.discrete}
    if not discrete:
        return []
    theta = {k: np.asarray(v) for k, v in conditioned.theta_of(samples, *args, batch_ndims=2, **kwargs).items()}
    untouched = {n: jnp.asarray(samples[n]) for n in plan.untouched if n in samples}
    found = []
    for site, spec in discrete.items():
        vals = theta[site]
        n_chains = vals.shape[0]
        for c in range(n_chains):
            first = vals[c, 0]
            if not np.all(vals[c] == first):
                continue
            others = np.concatenate([vals[k] for k in range(n_chains) if k != c]) if n_chains > 1 else vals[c][:0]
            from_chains = float(np.mean(np.any((others != first).reshape(len(others), -1), axis=1))) if len(
                others) else 0.0
            chain_theta = {k: v[c] for k, v in theta.items()}
            chain_untouched = {k: v[c] for k, v in untouched.items()}
            from_weights = _other_branch_mass(conditioned, plan, site, spec, chain_theta, chain_untouched,
                                              args, kwargs)
            mass = max(from_chains, from_weights)
            if mass >= min_mass:
                evidence = (f"other chains visit other values in {from_chains:.1%} of their draws; "
                            f"the branch weights of this chain's draws give {from_weights:.1%}")
                found.append(StuckBranch(site, c, first.tolist(), mass, evidence))
    return found


def _alternatives(spec, value):
    """Other values of one element of a discrete θ: every value of a bounded choice, ±1 of a period."""
    lo, hi = getattr(spec.support, "lower_bound", None), getattr(spec.support, "upper_bound", None)
    if lo is not None and hi is not None and int(hi) - int(lo) <= 16:
        return [k for k in range(int(lo), int(hi) + 1)]
    return [int(value) - 1, int(value), int(value) + 1]


def _other_branch_mass(conditioned, plan, site, spec, theta, untouched, args, kwargs):
    """Mean over the draws of the conditional probability that the site's element is elsewhere
    (exact Gibbs weights from the conditioned model's density at each alternative value);
    the largest over the site's elements."""
    from numpyro.infer.util import log_density

    def logp(params):
        return log_density(conditioned, args, kwargs, params)[0]

    batched = jax.jit(jax.vmap(logp))
    current = theta[site]
    n = current.shape[0]
    flat = current.reshape(n, -1)
    worst = 0.0
    for j in range(flat.shape[1]):
        values = _alternatives(spec, flat[0, j])
        lps = []
        for k in values:
            alt = flat.copy()
            alt[:, j] = k
            params = {**{s: jnp.asarray(v) for s, v in theta.items()}, **untouched,
                      site: jnp.asarray(alt.reshape(current.shape), current.dtype)}
            lps.append(np.asarray(batched(params), float))
        lps = np.stack(lps)  # alternatives × draws
        with np.errstate(invalid="ignore"):
            w = np.exp(lps - np.max(lps, axis=0, keepdims=True))
            w = w / np.sum(w, axis=0, keepdims=True)
        at_current = np.asarray([w[values.index(int(flat[i, j])), i] for i in range(n)])
        worst = max(worst, float(np.nanmean(1.0 - at_current)))
    return worst
