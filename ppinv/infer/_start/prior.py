"""Latent values a start is made from: the init strategy's, or a draw from the prior, batched over
sites of the same distribution (:func:`_latent_start`)."""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import Distribution
from numpyro.primitives import Messenger

from ...conditioning.sites import _placeholder


def _latent_start(cm, plan, strategy, key, args, kwargs):
    """Latent values of the original model: the strategy's, or a prior draw."""
    model = handlers.condition(cm.model, data=plan.sample_data)
    prior = _prior_plan(model, plan, args, kwargs)
    if prior is None:  # a model whose sites cannot be grouped: seeded as it runs
        seeded, drawn = handlers.seed(model, key), {}
    else:
        keys = _key_chain(key, prior.chain_length)
        seeded = _KeyChain(model, keys)
        drawn = _batched_prior_draw(model, prior.levels, keys, args, kwargs) if strategy is None else {}
    model = handlers.substitute(seeded, data=drawn)
    if strategy is not None:
        model = handlers.substitute(model, substitute_fn=strategy)
    tr = handlers.trace(model).get_trace(*args, **kwargs)
    return {n: tr[n]["value"] for n in plan.latents}


# --- prior draws, batched over sites ---------------------------------------------------------
# A model written with many separate sites (``[sample(f"x{i}", Gamma(2, 1)) for i in ...]``)
# drawn site by site compiles one sampler per site (a rejection loop each, for Gamma) and
# one key split per site into the start program, in every try. Instead, the keys that
# ``handlers.seed`` would split off one by one come from one loop (``_key_chain``), and
# sites whose distributions are computed from the same latents are drawn together, one
# vmapped draw per group of sites of the same distribution type and parameter shapes,
# each site with the key the seed gives it: the draws are those of
# ``handlers.seed(model, key)``, site for site, and the start holds one sampler per group.

#: levels of the prior drawn in batches (a site's level: 1 + the highest level of the latents
#: its distribution is computed from); deeper sites are drawn one by one, as the model runs
_MAX_PRIOR_LEVELS = 4

_PRIOR_PLANS = weakref.WeakKeyDictionary()  # plan -> its _PriorPlan (the model's structure is static)


class _KeyChain(Messenger):
    """``handlers.seed`` with its keys given: the i-th message to take a key gets ``keys[i]``.

    ``keys=None`` hands out placeholder keys and only counts (``count``).
    """

    def __init__(self, fn=None, keys=None):
        self.keys = keys
        self.count = 0
        super().__init__(fn)

    def process_message(self, msg):
        # the messages handlers.seed gives a key to, in the same order
        if msg["type"] not in ("sample", "prng_key", "plate", "control_flow"):
            return
        if msg["kwargs"]["rng_key"] is not None or msg["value"] is not None:
            return
        msg["kwargs"]["rng_key"] = jax.random.PRNGKey(0) if self.keys is None else self.keys[self.count]
        self.count += 1


def _key_chain(key, n):
    """The first ``n`` keys ``handlers.seed(model, key)`` splits off, in order (one loop, not n splits)."""

    def split(k, _):
        k, sub = jax.random.split(k)
        return k, sub

    return jax.lax.scan(split, key, None, length=n)[1] if n else None


class _PriorPlan:
    """How a start draws a model's prior: ``levels`` of groups drawn together, and how many keys."""

    def __init__(self, levels, chain_length):
        self.levels = levels  # [[(site names, sample_shape), ...] per level]
        self.chain_length = chain_length


def _prior_plan(model, plan, args, kwargs):
    """The model's ``_PriorPlan`` (``None`` where its distributions do not stack or vmap)."""
    try:
        return _PRIOR_PLANS[plan]
    except KeyError:
        pass
    try:
        prior = _group_by_level(model, plan, args, kwargs)
    except Exception:  # a distribution that does not stack or vmap: every site drawn as the model runs
        prior = None
    _PRIOR_PLANS[plan] = prior
    return prior


def _group_by_level(model, plan, args, kwargs):
    latents = list(plan.latents)
    found, counted = {}, {}

    def distributions(*values):
        chain = _KeyChain(model)
        tr = _trace_with(chain, dict(zip(latents, values)), args, kwargs)
        counted["keys"] = chain.count
        out = []
        for n in latents:
            leaves, treedef = jax.tree_util.tree_flatten(tr[n]["fn"])
            shape = tuple(tr[n]["kwargs"].get("sample_shape", ()))
            found[n] = (type(tr[n]["fn"]), treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves), shape)
            out.append(leaves)
        return out

    avals = [jax.ShapeDtypeStruct(plan.sites[n].shape, plan.sites[n].dtype) for n in latents]
    closed = jax.make_jaxpr(distributions)(*avals)
    reads = _inputs_read(closed.jaxpr)
    # which latents each site's distribution is computed from, site by site in the order of the model
    offsets = np.cumsum([0] + [len(found[n][2]) for n in latents])
    level = {}
    for i, n in enumerate(latents):
        deps = set().union(*reads[offsets[i]:offsets[i + 1]]) if offsets[i + 1] > offsets[i] else set()
        if any(latents[d] not in level for d in deps):  # reads a later site: drawn as the model runs
            return None
        level[n] = 1 + max((level[latents[d]] for d in deps), default=-1)
    levels = []
    for lev in range(min(_MAX_PRIOR_LEVELS, max(level.values(), default=-1) + 1)):
        groups = {}
        for n in latents:
            if level[n] == lev:
                groups.setdefault(found[n], []).append(n)
        levels.append([(tuple(names), key[3]) for key, names in groups.items()])
    prior = _PriorPlan(levels, counted["keys"])
    # every group must draw as one vmapped call (checked abstractly, once)
    jax.eval_shape(lambda k: _batched_prior_draw(model, levels, _key_chain(k, prior.chain_length), args, kwargs),
                   jax.random.PRNGKey(0))
    return prior


def _inputs_read(jaxpr):
    """For each output of ``jaxpr``, the set of its inputs (by index) it is computed from."""
    reads = {v: {i} for i, v in enumerate(jaxpr.invars)}
    for eqn in jaxpr.eqns:  # an equation's outputs read whatever any of its inputs read
        got = set().union(*(reads.get(v, set()) for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)))
        for o in eqn.outvars:
            reads[o] = got
    return [set() if isinstance(v, jax.extend.core.Literal) else reads.get(v, set()) for v in jaxpr.outvars]


def _trace_with(seeded, values, args, kwargs):
    """The trace of a seeded model with ``values`` at those sites and a point of the support at the other latents."""
    inner = handlers.substitute(seeded, data=values)
    return handlers.trace(handlers.substitute(inner, substitute_fn=_placeholder)).get_trace(*args, **kwargs)


def _batched_prior_draw(model, levels, keys, args, kwargs):
    """Prior draws of the sites of ``levels``, one vmapped draw per group of sites."""
    drawn = {}
    for groups in levels:
        tr = _trace_with(_KeyChain(model, keys), drawn, args, kwargs)
        for names, shape in groups:
            stacked = _stack_distributions([tr[n]["fn"] for n in names])
            site_keys = jnp.stack([tr[n]["kwargs"]["rng_key"] for n in names])  # the keys the seed gives them
            draws = jax.vmap(lambda d, k: d.sample(k, shape))(stacked, site_keys)
            drawn.update(zip(names, draws))
    return drawn


def _stack_distributions(fns):
    """One distribution whose leaves are those of ``fns`` (same type and shapes) stacked on a new axis.

    The stacks are emitted in the order of the leaves' field names: NumPyro flattens a
    distribution's fields in an order that depends on string hashing, which would make
    the compiled start differ between processes (and miss the persistent cache).
    """
    leaves = [jax.tree_util.tree_flatten(fn) for fn in fns]
    treedef = leaves[0][1]
    names = _leaf_names(fns[0])
    n = len(leaves[0][0])
    order = sorted(range(n), key=names.__getitem__) if len(names) == n == len(set(names)) else range(n)
    stacked = [None] * n
    for j in order:
        stacked[j] = jnp.stack([jnp.asarray(lv[j]) for lv, _ in leaves])
    return jax.tree_util.tree_unflatten(treedef, stacked)


def _leaf_names(obj):
    """A name for each leaf of ``obj``, in ``tree_flatten``'s order, that does not depend on the process."""
    if isinstance(obj, Distribution) and type(obj).tree_flatten is Distribution.tree_flatten:
        names = []
        for field in type(obj).gather_pytree_data_fields():
            names += [(field,) + name for name in _leaf_names(obj.__dict__.get(field))]
        return names
    nested = lambda x: x is not obj and isinstance(x, Distribution)  # noqa: E731
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(obj, is_leaf=nested)[0]:
        key = tuple(str(k) for k in path)
        names += [key + name for name in _leaf_names(leaf)] if nested(leaf) else [key]
    return names
