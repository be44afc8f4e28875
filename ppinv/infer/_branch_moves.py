"""Branch jumps: an exact Metropolis–Hastings move that changes the continuous and the discrete θ together.

A Gibbs sweep over discrete θ (:mod:`ppinv.infer._discrete`) changes the branch
with the continuous coordinates held fixed, and NUTS moves the continuous
coordinates with the branch held fixed. Neither crosses between regions of the
manifold that no branch joins continuously: the logistic map's posterior over
the rate ``b``, say, has one part near ``b = 3`` (few branches, each heavy) and
one in the chaotic range (thousands of light branches), and a chain stays in the
part it started in.

:func:`branch_jump` proposes

1. new continuous coordinates ``z'`` independently, from a two-scale Gaussian
   mixture in unconstrained space (:func:`propose_continuous`), and
2. new discrete θ ``d'`` by one systematic sweep *at* ``z'`` (:func:`sweep_path`)
   from :func:`sweep_start`: every small choice reset to its lowest value, every
   unbounded integer at its current value. Each element in turn is drawn from
   its conditional over a candidate set (every value of a small choice; the
   current value and its two neighbours on an unbounded integer), so ``d'`` is a
   branch that carries mass at ``z'``. The reset makes the sweep's start
   independent of the current branch: a branch tuple that is valid only near the
   current ``z`` (the logistic map's, say) would leave every element of a sweep
   started from it with no finite candidate at ``z'``. The sweep runs in site
   order or in reverse order, by a fair coin: which order builds a heavy branch
   depends on the model (a scan's roots are best chosen from the observed end).

The reverse proposal is the same construction from ``(z', d')``: ``z`` from the
mixture and the sweep at ``z`` from ``sweep_start(d')`` that ends at ``d``, whose
probability :func:`sweep_path` scores along that path, in the same order (the
coin's probability cancels). The acceptance ratio

    π(z', d') q(z) R_z(start(d') → d)  /  π(z, d) q(z') F_z'(start(d) → d')

is exact, so the move leaves the target invariant for any model.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import random
from jax.scipy.special import logsumexp

from ._target import discrete_neighbours

__all__ = ["branch_jump", "propose_continuous", "sweep_path", "sweep_start", "WIDE_SCALE"]

#: The two scales of the independence proposal in unconstrained space: the reference
#: distribution's (1) and a wide one that reaches posterior mass in the tails of the reference.
WIDE_SCALE = 3.0


def _mixture_log_prob(z):
    """log density of ½ N(0, 1) + ½ N(0, WIDE_SCALE²), independently per coordinate, summed."""
    total = jnp.zeros(())
    for v in jax.tree_util.tree_leaves(z):
        v = jnp.ravel(v)
        narrow = -0.5 * v**2 - 0.5 * jnp.log(2 * jnp.pi)
        wide = -0.5 * (v / WIDE_SCALE) ** 2 - 0.5 * jnp.log(2 * jnp.pi) - jnp.log(WIDE_SCALE)
        total = total + jnp.sum(logsumexp(jnp.stack([narrow, wide]), axis=0) - jnp.log(2.0))
    return total


def propose_continuous(key, z):
    """Independent draws of every continuous coordinate from the mixture; returns ``(z', log q(z'))``."""
    names = sorted(z)
    out = {}
    for name, k in zip(names, random.split(key, max(len(names), 1))):
        k_scale, k_normal = random.split(k)
        v = jnp.asarray(z[name])
        scale = jnp.where(random.bernoulli(k_scale, 0.5, jnp.shape(v)), WIDE_SCALE, 1.0)
        out[name] = (scale * random.normal(k_normal, jnp.shape(v), v.dtype)).astype(v.dtype)
    return out, _mixture_log_prob(out)


def _candidates(kind, k, lo, current, dtype):
    """The values one element may take in the sweep: all of a small choice, or ``current`` ± 1."""
    if kind == "enumerate":
        return lo + jnp.arange(k, dtype=dtype)
    return current + jnp.arange(-1, 2, dtype=dtype)


def _small_choice_low(support):
    """The lowest value of a small choice, or ``None`` for an unbounded integer (walked, not reset)."""
    kind, _ = discrete_neighbours(support)
    return int(support.lower_bound) if kind == "enumerate" else None


def sweep_start(target, disc):
    """Where a branch jump's sweep starts: small choices at their lowest value, unbounded integers as in ``disc``."""
    start = {}
    for name in target.discrete_sites:
        low = _small_choice_low(target.discrete_support[name])
        start[name] = disc[name] if low is None else jnp.full_like(disc[name], low)
    return start


def sweep_path(target, z, start, *, key=None, end=None, backwards=False, args=None, kwargs=None):
    """One systematic sweep over the discrete θ at continuous ``z``, starting from ``start``.

    Each element, in site order (reversed with ``backwards``), is drawn from its
    conditional (the target at ``z`` over the element's candidates, the other
    elements at their running values); where no candidate has finite density the
    element keeps its value.
    With ``key`` the sweep samples; with ``end`` it follows the path to ``end``
    and scores it. Returns ``(discrete values, log probability of the path)``;
    the log probability is −∞ where ``end`` is not reachable.
    """
    pe_of = lambda d: target.potential(z, d, args, kwargs)  # noqa: E731
    d = dict(start)
    log_p = jnp.zeros(())
    sites = list(target.discrete_sites)[::-1] if backwards else list(target.discrete_sites)
    keys = random.split(key, len(sites)) if key is not None else [None] * len(sites)
    for name, site_key in zip(sites, keys):
        kind, k = discrete_neighbours(target.discrete_support[name])
        lo = int(getattr(target.discrete_support[name], "lower_bound", 0)) if kind == "enumerate" else 0
        size = int(jnp.size(d[name]))
        shape = jnp.shape(d[name])
        goal = None if end is None else jnp.reshape(end[name], -1)

        def body(j, carry, name=name, kind=kind, k=k, lo=lo, size=size, shape=shape, goal=goal, site_key=site_key):
            d, log_p = carry
            i = size - 1 - j if backwards else j
            flat = d[name].reshape(-1)
            cands = _candidates(kind, k, lo, flat[i], flat.dtype)
            pes = jax.vmap(lambda c: pe_of({**d, name: flat.at[i].set(c).reshape(shape)}))(cands)
            logits = jnp.where(jnp.isfinite(pes), -pes, -jnp.inf)
            stuck = ~jnp.any(jnp.isfinite(logits))
            # no candidate has mass here: the element keeps its value (with probability one)
            logits = jnp.where(stuck, jnp.where(cands == flat[i], 0.0, -jnp.inf), logits)
            log_probs = logits - logsumexp(logits)
            if goal is None:
                choice = random.categorical(random.fold_in(site_key, i), logits)
                chosen, step_log_p = cands[choice], log_probs[choice]
            else:
                hit = cands == goal[i]
                chosen = goal[i]
                step_log_p = jnp.where(jnp.any(hit), jnp.max(jnp.where(hit, log_probs, -jnp.inf)), -jnp.inf)
            return {**d, name: flat.at[i].set(chosen).reshape(shape)}, log_p + step_log_p

        d, log_p = jax.lax.fori_loop(0, size, body, (d, log_p))
    return d, log_p


def _sweeps(target, key, z, z_new, disc, args, kwargs, *, backwards):
    """The forward sweep at ``z_new`` (sampled) and the reverse one at ``z`` back to ``disc`` (scored)."""
    d_new, log_forward = sweep_path(target, z_new, sweep_start(target, disc), key=key, backwards=backwards,
                                    args=args, kwargs=kwargs)
    _, log_reverse = sweep_path(target, z, sweep_start(target, d_new), end=disc, backwards=backwards,
                                args=args, kwargs=kwargs)
    return d_new, log_forward, log_reverse


def branch_jump(target, key, z, disc, args=None, kwargs=None):
    """Propose new continuous coordinates and a branch that carries mass there; exact MH acceptance.

    ``z``: the continuous sites (unconstrained, by name); ``disc``: the discrete θ.
    Returns ``(z, disc, accepted)`` with the new values where accepted.
    """
    k_cont, k_sweep, k_accept, k_order = random.split(key, 4)
    z_new, log_q_new = propose_continuous(k_cont, z)
    # the sweep's direction by a fair coin; the reverse proposal sweeps in the same direction
    sweeps = partial(_sweeps, target, k_sweep, z, z_new, disc, args, kwargs)
    d_new, log_forward, log_reverse = jax.lax.cond(
        random.bernoulli(k_order), partial(sweeps, backwards=True), partial(sweeps, backwards=False))
    pe_old = target.potential(z, disc, args, kwargs)
    pe_new = target.potential(z_new, d_new, args, kwargs)
    log_a = (pe_old - pe_new) + (_mixture_log_prob(z) - log_q_new) + (log_reverse - log_forward)
    log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
    accept = jnp.log(random.uniform(k_accept)) < log_a
    pick = lambda a, b: jnp.where(accept, a, b)  # noqa: E731
    return (
        jax.tree_util.tree_map(pick, z_new, z),
        jax.tree_util.tree_map(pick, d_new, disc),
        accept.astype(jnp.result_type(float)),
    )
