"""Starting points of ppinv's kernels: the best of many PGF starts, spread over the branches.

A start is made in three moves: an initialisation strategy gives values of the
*original* model's latents (by default a draw from its prior), the PGF turns
them into θ (``θ = φ(x₀)``), and the inverse maps θ back onto the constraint
set (``x = g(y_obs, θ)``) — a valid point whenever ``(y_obs, θ)`` is in the
inverse's domain. Of ``num_tries`` such points, a chain starts at the one of
highest log density; where θ has discrete parts (signs, roots, periods), the
chains are dealt out over the branches found among the tries, best branch
first, so that several chains start on different branches and none starts on
a branch of negligible mass.

Everything here is a pure function of a key and the model arguments, so one
compiled program serves all chains (``vmap`` over keys and chain indices).
"""

from __future__ import annotations

import math
import weakref
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.primitives import Messenger
from numpyro.distributions import Distribution
from numpyro.infer.initialization import init_to_median, init_to_value
from numpyro.infer.util import log_density

from .._compat import is_concrete
from ..errors import ConditionError
from ..conditioning.sites import _placeholder
from ._args import ModelArgs

__all__ = ["pgf_initial_values", "StartRule", "start_point", "pick_start", "raise_if_no_valid_start",
           "BRANCH_LOG_DENSITY_GAP"]

#: A branch whose best try is this far (in log density) below the best try of all is
#: treated as holding negligible mass: no chain is sent to start there.
BRANCH_LOG_DENSITY_GAP = math.log(1e3)


class StartRule:
    """How starting points are made: an init strategy on the latents and θ values to fix.

    ``strategy`` is a NumPyro init strategy (``init_to_sample``, ``init_to_median``,
    ``init_to_uniform``, ``init_to_value``, ...) applied to the latent sites of the
    original model; ``None`` (the default) draws them from the prior, which is what
    ``init_to_sample`` means. Values that ``init_to_value`` gives for θ sites (by
    their names in the conditioned model, ``plan.theta_sites``) replace the θ the
    PGF computes.
    """

    def __init__(self, strategy=None):
        self.description = "prior draws mapped through the PGF"
        self.strategy = None
        self.values = None  # init_to_value's values, split by bind()
        if strategy is None:
            return
        strategy = strategy if isinstance(strategy, partial) else strategy()
        func, kw = strategy.func, dict(strategy.keywords or {})
        if func is init_to_median and kw.get("num_samples") == 1:
            return  # init_to_sample: a prior draw, the default
        self.description = f"{func.__name__}({', '.join(f'{k}=...' for k in kw)}) mapped through the PGF"
        self.strategy = strategy
        if func is init_to_value:
            self.values = dict(kw.get("values", {}))

    def bind(self, plan):
        """Split ``init_to_value``'s values into θ values and latent values (once per plan)."""
        values = self.values
        if values is None:
            return self.strategy, {}
        theta_of_site = {site: n for n, site in plan.theta_sites.items()}
        theta = {theta_of_site[k]: jnp.asarray(v) for k, v in values.items() if k in theta_of_site}
        latent_values = {k: v for k, v in values.items() if k not in theta_of_site}
        return init_to_value(values=latent_values), theta


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


def raise_if_no_valid_start(cm, rule, keys, valid, margs, num_tries):
    """Raise the no-valid-start error if ``valid`` (concrete; one entry per chain) says so.

    ``keys`` holds the start key (``start_point``'s) of each chain. Why the tries
    failed is worked out here, in a program compiled only on this failure path.
    """
    valid = np.asarray(valid).reshape(-1)
    if valid.all():
        return
    key = keys[int(np.argmin(valid))]
    args, kwargs = margs.rebuild(margs.dynamic)
    plan = cm.plan(*args, **kwargs)

    def why(key, dynamic):
        a, kw = margs.rebuild(dynamic)
        p = cm.plan(*a, **kw)
        keys = jax.random.split(key, num_tries)
        ok, in_support = jax.lax.map(lambda k: _why_invalid(cm, p, rule, k, a, kw), keys)
        return jnp.any(ok), jnp.any(in_support)

    inv_ok, in_support = jax.jit(why)(key, margs.dynamic)
    raise_no_valid_start(plan, args, kwargs, num_tries, bool(inv_ok), bool(in_support), rule)


def _fmt(v):
    v = np.asarray(v)
    return repr(v.item()) if v.ndim == 0 else np.array2string(v, threshold=8)


def raise_no_valid_start(plan, args, kwargs, num_tries, some_inverse_ok, some_in_support, rule=None):
    y = plan.observed_values(plan.ctx_of(args, kwargs))
    obs = ", ".join(f"'{n}' = {_fmt(v)}" for n, v in zip(plan.exact, y))
    sites = ", ".join(repr(n) for n in plan.exact)
    lat = ", ".join(repr(n) for n in plan.upstream)
    draws = f"{num_tries} " + ("prior draws" if rule is None or rule.strategy is None else "initial points")
    if not some_in_support:
        why = (
            f"the observed value ({obs}) is outside the range of {sites} given the supports of the latents "
            f"({lat}): solving for them puts a latent outside its support at every one of {draws} "
            "(e.g. a sum of positive latents observed at a negative value)"
        )
    elif not some_inverse_ok:
        why = (
            f"the observed value ({obs}) is outside the range of the map from the latents ({lat}) to {sites}: "
            f"the inverse is undefined there for every one of {draws} (e.g. exp(a) observed "
            "at a negative value, a*a at a negative value, sin(a) outside [-1, 1])"
        )
    else:
        why = (
            f"at the observation ({obs}), every one of {draws} mapped through the inverse has "
            "zero density under the model (the observed value may be outside the range of what the prior "
            "allows, or the observations contradict each other)"
        )
    hint = ""
    if rule is not None and rule.strategy is not None:
        hint = (
            f" The starts came from init_strategy={rule.description}; its values (or the θ they give) may "
            "be invalid: try the default init_strategy (prior draws)."
        )
    raise ConditionError(
        f"no valid starting point: {why}. Check the observed value(s) in the data; if they are right and "
        f"valid points are merely rare, raise init_tries or pass init_params.{hint}"
    )


# one compiled start program per conditioned model and argument signature (pgf_initial_values
# is called eagerly by users and experiment scripts; a fresh jit per call would recompile)
_COMPILED = weakref.WeakKeyDictionary()


def _compiled_start(cm, margs: ModelArgs, num_tries):
    try:
        per_model = _COMPILED.setdefault(cm, {})
    except TypeError:  # an unhashable model object: no cache
        per_model = {}
    key = (margs.signature, num_tries)
    fn = per_model.get(key)
    if fn is None:

        def ppinv_pgf_start(rng_key, chain_index, dynamic):
            args, kwargs = margs.rebuild(dynamic)
            plan = cm.plan(*args, **kwargs)
            return start_point(cm, plan, StartRule(), rng_key, chain_index, args, kwargs, num_tries)

        fn = per_model[key] = jax.jit(ppinv_pgf_start)
    return fn


def pgf_initial_values(cm, rng_key, args=(), kwargs=None, num_tries=64, check=True, chain_index=0):
    """A valid point of the conditioned model: the best of ``num_tries`` PGF starts.

    Each try draws ``x`` from the model's prior and sets ``θ = pgf(x)``;
    ``g(y_obs, θ)`` is then a point on the constraint set whenever ``(y_obs, θ)``
    is inside the domain. The try of highest log density under the conditioned
    model is returned (constrained values by site name); with discrete θ,
    ``chain_index`` picks the branch (see :func:`pick_start`). The tries are
    made from ``jax.random.split(rng_key, num_tries)``. With ``check=False`` no
    error is raised when no try is valid (for use inside ``vmap`` over data sets).
    """
    kwargs = dict(kwargs or {})
    args = tuple(args)
    margs = ModelArgs(args, kwargs)
    fn = _compiled_start(cm, margs, num_tries)
    concrete_args = all(is_concrete(d) for d in margs.dynamic)
    if check and not is_concrete(rng_key) and concrete_args:
        # Traced key (MCMC's chain_method="parallel" initialises inside pmap): the draws
        # below cannot be inspected, so check once with a concrete key that a valid point
        # exists at all, to fail here with the reason instead of running chains at −∞.
        with jax.ensure_compile_time_eval():
            key0 = jax.random.PRNGKey(0)
            raise_if_no_valid_start(cm, StartRule(), key0[None], fn(key0, 0, margs.dynamic)[2], margs, num_tries)
    pick, _, valid = fn(rng_key, chain_index, margs.dynamic)
    if check and is_concrete(valid) and concrete_args:
        raise_if_no_valid_start(cm, StartRule(), rng_key[None], valid, margs, num_tries)
    return pick
