"""Exact Gibbs updates of discrete θ, shared by ppinv's kernels: one systematic sweep over every
discrete element, enumerating a bounded choice and stepping ±1 on a period (:func:`discrete_sweep`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import random

from ._target import discrete_neighbours


def discrete_sweep(target, key, z, disc, args=None, kwargs=None):
    """One systematic sweep over every discrete θ element; returns (new values, mean acceptance)."""
    pe_of = lambda d: target.potential(z, d, args, kwargs)  # noqa: E731
    total, accepted = 0, jnp.zeros(())
    for name in target.discrete_sites:
        kind, k = discrete_neighbours(target.discrete_support[name])
        size = int(jnp.size(disc[name]))
        lo = int(getattr(target.discrete_support[name], "lower_bound", 0)) if kind == "enumerate" else 0
        key, sub = random.split(key)

        def body(i, carry, name=name, kind=kind, k=k, lo=lo):
            d, acc, key = carry
            key, k1, k2 = random.split(key, 3)
            flat = d[name].reshape(-1)
            if kind == "enumerate":
                cands = lo + jnp.arange(k, dtype=flat.dtype)
                pes = jax.vmap(lambda c: pe_of({**d, name: flat.at[i].set(c).reshape(d[name].shape)}))(cands)
                logits = jnp.where(jnp.isfinite(pes), -pes, -jnp.inf)
                choice = random.categorical(k1, logits)
                new = flat.at[i].set(cands[choice])
                moved = (cands[choice] != flat[i]).astype(acc.dtype)
                return {**d, name: new.reshape(d[name].shape)}, acc + moved, key
            step = jnp.where(random.bernoulli(k1), 1, -1).astype(flat.dtype)
            prop = {**d, name: flat.at[i].add(step).reshape(d[name].shape)}
            log_a = pe_of(d) - pe_of(prop)
            accept = jnp.log(random.uniform(k2)) < jnp.where(jnp.isfinite(log_a), log_a, -jnp.inf)
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), prop, d)
            return new, acc + accept.astype(acc.dtype), key

        disc, accepted, _ = jax.lax.fori_loop(0, size, body, (disc, accepted, sub))
        total += size
    return disc, accepted / max(total, 1)
