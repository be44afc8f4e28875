"""``ppinv.condition``: exact conditioning of NumPyro models on deterministic observations.

NumPyro's ``condition`` silently ignores ``deterministic`` sites, and a
``Delta`` likelihood is −∞ almost everywhere. :func:`condition` instead
inverts the map from the latent sites to the observed values and returns an
ordinary NumPyro model over the parameters θ of that inverse, written as one
would write it by hand:

* its sample sites are the θ sites, the latents that no exact observation
  depends on, and the model's own ordinary (noisy) observations. A θ that is
  a whole latent keeps the latent's name (observing ``y = a·b``, ``a`` is
  sampled and ``b`` solved); the other θ (null-space coordinates, signs,
  roots, periods, ...) are named ``theta_<name>``;
* the θ sites carry θ's density themselves: the first holds the exact
  conditional ``log p_X(x) + log|det ∂x/∂(y, θ)|`` (its
  :class:`ConditionalDensity`), the others zero. No observed site is added, so
  ``log_likelihood``, ``az.loo``/``az.waic`` and ``get_model_relations`` see the
  model's own noisy observations as its likelihood, and nothing else;
* the solved latents come back as ``deterministic`` sites under their own
  names. The exact observations are constraints, not likelihood terms: they
  are data (``cm.data``), not sites of the conditioned model. Only where they
  leave no θ at all (they determine the latents) is their joint density
  ``p(y | other latents)`` a likelihood; the first exact site is then an
  observed site carrying it.

The model's ``numpyro.param`` sites, its model arguments and the data are
inputs of the inverse, read at every call: after SVI (or
``handlers.substitute``) moves a param, the constraint solved is the one with
the new value.

Because the result is a plain NumPyro model, NUTS, HMC, DiscreteHMCGibbs, SVI
and Predictive all work on it; :mod:`ppinv.infer` adds kernels that start
from valid points and move between branches. NumPyro's handlers compose with
it: ``handlers.condition`` on a latent conditions that latent (the inverse is
rebuilt with it as data), and ``handlers.substitute`` with values of every
solved latent (``Predictive`` given the samples of ppinv's kernels, which hold
the model's sites only) sets θ from the PGF.
"""

from __future__ import annotations

import difflib
import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.tree_util import tree_flatten, tree_unflatten
from numpyro import handlers
from numpyro import primitives as _primitives
from numpyro.distributions import constraints
from numpyro.primitives import Messenger

from ._compat import is_concrete
from ._ir import V, import_jaxpr
from ._schedule import FreeStep, build_schedule, propagate_supports, run_schedule, run_schedule_extra, schedule_pgf
from .errors import ConditionError, InversionError, NoRuleError
from .inverse import _keep_call, support_refusal
from .rules import current_table
from .theta import intrinsic_size, is_constrained, support_bounds
from .theta_choice import choose_schedule

__all__ = ["condition", "ConditionedModel", "ConditionalDensity", "THETA_PREFIX"]

THETA_PREFIX = "theta_"


def condition(model, data=None, *, free=None, theta_prefix: str = THETA_PREFIX, choose_theta: bool = True):
    """Condition ``model`` exactly on ``data``.

    Parameters
    ----------
    model:
        A NumPyro model (a callable with ``numpyro.sample``/``deterministic``
        sites), or a model already conditioned by :func:`condition` (the data
        are then merged: ``condition(condition(m, a), b)`` is
        ``condition(m, {**a, **b})``; a name in both is an error).
    data:
        ``site name -> observed value``. Names of ``deterministic`` sites (and of
        ``Delta`` sample sites) are exact observations, solved for by parametric
        inversion; names of other sample sites are conditioned as
        ``numpyro.handlers.condition`` does. ``Delta`` sites given ``obs=`` in
        the model are exact observations without a data key.
    free:
        Optional latent site names to make θ first, before ppinv's own choice of
        which latents to free: picks the parametrisation the sampler moves in
        (e.g. ``free=["e"]`` in Kepler's ``M = E − e·sin E`` samples the
        eccentricity and solves for ``E``). Naming a site that is not a latent
        upstream of the observations, or one whose freeing would over-determine
        the rest, is an error.
    theta_prefix:
        Prefix of the names of θ sites that are not latents of the model.
    choose_theta:
        Choose θ by geometry (``ppinv.theta_choice``): among a few schedules, the one whose
        solves map the most prior draws to valid points at the data (the fewest walls a
        sampler meets). ``False`` keeps the scheduler's own order of preferences.

    Returns
    -------
    ConditionedModel
        A NumPyro model taking the original model's arguments. A model that
        takes no arguments is traced and checked here (wrong names, shapes,
        data outside a site's support, observations that cannot be inverted
        are errors now); one with arguments is checked by ``cm.plan(*args)`` or
        its first call.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> import ppinv
    >>> def model():
    ...     a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    ...     b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * b)
    >>> conditioned = ppinv.condition(model, {"y": 2.0})
    """
    data = {} if data is None else data
    if isinstance(model, ConditionedModel):
        return model.merged(data, free=free, theta_prefix=theta_prefix, choose_theta=choose_theta)
    return ConditionedModel(model, data, theta_prefix=theta_prefix, free=free, choose_theta=choose_theta)


class ConditionalDensity(dist.Distribution):
    """The distribution of a θ site of a conditioned model.

    Draws come from ``reference``, a proper distribution on θ's support (for
    prior predictive draws and initialisation). The log density is ``share``:
    this site's part of the exact conditional ``log p_X(g(y, θ)) + log|det|``.
    That part needs every θ, so the conditioned model sets it once all θ sites
    have their values; NumPyro reads log densities off the finished trace.
    """

    pytree_data_fields = ("reference", "share")
    pytree_aux_fields = ("_support",)

    def __init__(self, reference=None, share=None, *, event_shape=None, support=None):
        self.reference = reference
        self.share = share
        self._support = support if support is not None else reference.support
        if event_shape is None:
            event_shape = tuple(reference.batch_shape) + tuple(reference.event_shape)
        super().__init__(batch_shape=(), event_shape=tuple(event_shape), validate_args=False)

    @property
    def support(self):
        return self._support

    @property
    def has_enumerate_support(self):
        return self.reference is not None and self.reference.has_enumerate_support

    def enumerate_support(self, expand=True):
        return self.reference.enumerate_support(expand)

    def sample(self, key, sample_shape=()):
        if self.reference is None:
            raise ConditionError("an exact observation's density has no draws; it is always observed.")
        return self.reference.sample(key, sample_shape)

    def log_prob(self, value):
        if self.share is None:
            raise ConditionError(
                "the log density of a θ site of a ppinv-conditioned model was read before the model finished "
                "running; read it from a complete trace (numpyro.infer.util.log_density does)."
            )
        return self.share


def _unwrap(fn):
    while True:
        inner = getattr(fn, "base_dist", None)
        if inner is None:
            return fn
        fn = inner


def _is_delta(fn) -> bool:
    return isinstance(_unwrap(fn), dist.Delta)


def _static_support(fn):
    """The site's support when it holds no traced values (else ``None``)."""
    try:
        sup = fn.support
    except Exception:
        return None
    leaves = jax.tree_util.tree_leaves(sup) if hasattr(sup, "tree_flatten") else []
    if any(not is_concrete(leaf) for leaf in leaves):
        return None
    return sup


def _aval(value):
    if isinstance(value, jax.ShapeDtypeStruct):
        return value
    return jax.ShapeDtypeStruct(jnp.shape(value), jnp.result_type(value))


def _known(value) -> bool:
    """A value that can be checked now (not traced, not a placeholder)."""
    return not isinstance(value, jax.ShapeDtypeStruct) and is_concrete(value)


@dataclass
class _SiteInfo:
    name: str
    kind: str  # "latent", "exact" (deterministic or Delta observation), "observed", "other"
    shape: tuple
    dtype: object
    discrete: bool = False
    support: object = None
    from_data: bool = False
    delta: bool = False

    @property
    def simplex(self) -> bool:
        return isinstance(self.support, type(constraints.simplex))

    @property
    def input_shape(self) -> tuple:
        """Shape of the latent as an input of the inverted map (a simplex drops its last entry)."""
        return self.shape[:-1] + (self.shape[-1] - 1,) if self.simplex else self.shape

    def to_input(self, value):
        return value[..., :-1] if self.simplex else value

    def from_input(self, value):
        # A simplex is a manifold of one dimension less than its shape, and its density
        # (Dirichlet's, say) is with respect to Lebesgue measure on all entries but the last;
        # so the inverse solves for those entries and the last is 1 − their sum.
        if self.simplex:
            return jnp.concatenate([value, 1.0 - jnp.sum(value, axis=-1, keepdims=True)], axis=-1)
        return value


class _Plan:
    """Everything :class:`ConditionedModel` needs for one signature of model arguments.

    The inverted program's known inputs (its context) are, in this order: the
    array leaves of the model arguments, the values of the model's
    ``numpyro.param`` sites, and the data of the sample sites conditioned as
    NumPyro does. All three are read at every call, never baked in.
    """

    def __init__(self, cm, args, kwargs):
        self.cm = cm
        self._support_unsure = None
        leaves, self.arg_tree = tree_flatten((args, kwargs))
        self.dynamic = [_is_array(leaf) for leaf in leaves]
        self.static_leaves = [None if d else leaf for d, leaf in zip(self.dynamic, leaves)]
        arg_ctx = [jnp.asarray(leaf) for leaf, d in zip(leaves, self.dynamic) if d]
        self.arg_avals = [jax.ShapeDtypeStruct(c.shape, c.dtype) for c in arg_ctx]
        self._discover()
        self._check_data()
        self._build_inverse(arg_ctx)

    # -- argument plumbing ---------------------------------------------------------------
    def rebuild_args(self, ctx):
        it = iter(ctx[: len(self.arg_avals)])
        leaves = [next(it) if d else s for d, s in zip(self.dynamic, self.static_leaves)]
        return tree_unflatten(self.arg_tree, leaves)

    def ctx_of(self, args, kwargs):
        """The array leaves of the model arguments (the first part of the context)."""
        leaves, _ = tree_flatten((args, kwargs))
        return [jnp.asarray(leaf) for leaf in leaves if _is_array(leaf)]

    @property
    def sample_data(self):
        return {n: self.cm.data[n] for n in self.data_names}

    def read_params(self, args, kwargs):
        """The current value of every ``numpyro.param`` of the model, as the handlers around give it.

        The model is run with placeholder values at its sample sites, and only its
        param messages go out to the enclosing handlers (SVI's substitute, a user's
        ``handlers.substitute``...): under ``jit`` everything but the params is dead code.
        """
        if not self.params:
            return {}
        with handlers.block(hide_fn=lambda msg: msg["type"] not in ("param", "prng_key")):
            with handlers.trace() as tr, handlers.substitute(substitute_fn=_placeholder):
                self.cm.model(*args, **kwargs)
        return {n: tr[n]["value"] for n in self.params}

    def full_ctx_of(self, args, kwargs, data=None, params=None):
        """The whole context (arguments, params, sample data) for these model arguments."""
        return self._full_ctx(self.ctx_of(args, kwargs), data, params)

    def _full_ctx(self, ctx, data=None, params=None):
        """Arguments' leaves + params + sample data: the known inputs of the inverse."""
        ctx = list(ctx)[: len(self.arg_avals)]
        data = self.cm.data if data is None else data
        if params is None:
            params = self.read_params(*self.rebuild_args(ctx))
        missing = [n for n in self.params if n not in params]
        if missing:
            raise ConditionError(f"params {missing} of the model are missing from the params given.")
        return (
            ctx
            + [jnp.asarray(params[n], self.params[n].dtype) for n in self.params]
            + [jnp.asarray(data[n]) for n in self.data_names]
        )

    # -- pass 1: which sites exist ------------------------------------------------------------
    def _discover(self):
        cm = self.cm
        sites, params = {}, {}
        data_keys = []

        def probe(*ctx):
            args, kwargs = self.rebuild_args(ctx)
            with handlers.trace() as tr, handlers.seed(rng_seed=0):
                cm.model(*args, **kwargs)
            for name, site in tr.items():
                if site["type"] == "plate":
                    sub = site["args"][1] if len(site["args"]) > 1 else None
                    if sub is not None and sub < site["args"][0]:
                        raise ConditionError(
                            f"plate '{name}' subsamples ({sub} of {site['args'][0]}); ppinv.condition needs "
                            "the full data. Remove subsample_size."
                        )
                if site["type"] == "param":
                    params[name] = _aval(site["value"])
                if site["type"] not in ("sample", "deterministic"):
                    continue
                value = site["value"]
                info = _SiteInfo(name, "other", tuple(jnp.shape(value)), jnp.result_type(value))
                if site["type"] == "deterministic":
                    info.kind = "exact" if name in cm.data else "other"
                    info.from_data = name in cm.data
                else:
                    fn = site["fn"]
                    info.delta = _is_delta(fn)
                    info.discrete = bool(getattr(fn.support, "is_discrete", False)) or not jnp.issubdtype(
                        info.dtype, jnp.floating
                    )
                    info.support = _static_support(fn)
                    if info.delta and (site["is_observed"] or name in cm.data):
                        info.kind, info.from_data = "exact", name in cm.data
                    elif name in cm.data:
                        info.kind = "observed"
                        data_keys.append(name)
                    elif site["is_observed"]:
                        info.kind = "observed"
                    else:
                        info.kind = "latent"
                sites[name] = info
            return 0

        jax.make_jaxpr(probe)(*self.arg_avals)
        self.sites = sites
        self.params = params
        self.data_names = data_keys
        self.exact = [n for n, s in sites.items() if s.kind == "exact"]
        self.latents = [n for n, s in sites.items() if s.kind == "latent"]
        self.ctx_avals = list(self.arg_avals) + list(params.values()) + [_aval(cm.data[n]) for n in data_keys]
        if self._has_model_deltas:
            self.delta_obs_jaxpr = jax.make_jaxpr(self._model_delta_values)(*self.ctx_avals)

    def _run_model(self, full_ctx, latents=None):
        """Trace the model at the given context (arguments, params, sample data) and latent values."""
        n_args, n_params = len(self.arg_avals), len(self.params)
        args, kwargs = self.rebuild_args(full_ctx)
        params = dict(zip(self.params, full_ctx[n_args : n_args + n_params]))
        data = dict(zip(self.data_names, full_ctx[n_args + n_params :]))
        with handlers.trace() as tr, handlers.seed(rng_seed=0), handlers.substitute(
            data={**(latents or {}), **params}
        ), handlers.condition(data=data):
            self.cm.model(*args, **kwargs)
        return tr

    def _model_delta_values(self, *full_ctx):
        """The ``obs=`` values of the model's Delta sites that no data key names."""
        tr = self._run_model(list(full_ctx))
        return [tr[n]["value"] for n in self.exact if self.sites[n].delta and not self.sites[n].from_data]

    def _check_data(self):
        cm, sites = self.cm, self.sites
        unknown = sorted(set(cm.data) - set(sites))
        if unknown:
            hints = []
            for n in unknown:
                close = difflib.get_close_matches(n, list(sites), n=1)
                if close:
                    hints.append(f" For '{n}', did you mean '{close[0]}'?")
            raise ConditionError(
                f"data names {', '.join(repr(n) for n in unknown)}, which are not sites of the model. "
                f"Sites of the model: {sorted(sites)}.{''.join(hints)} Use the name given to "
                "numpyro.deterministic or numpyro.sample in the model."
            )
        if not self.exact:
            raise ConditionError(
                "nothing to condition exactly: no data key names a deterministic or Delta site, and the "
                "model has no observed Delta site. For ordinary observations use numpyro.handlers.condition."
            )
        for n in self.exact:
            if sites[n].from_data:
                _check_value(n, cm.data[n], sites[n].shape)
        for n in self.data_names:
            _check_sample_data(n, cm.data[n], sites[n])

    # -- pass 2: the map latents -> exact observations, and its inverse ------------------------
    def _build_inverse(self, arg_ctx):
        cm = self.cm
        latents = self.latents
        sites = self.sites

        def forward(*flat):
            lat = {n: sites[n].from_input(v) for n, v in zip(latents, flat[: len(latents)])}
            tr = self._run_model(list(flat[len(latents) :]), lat)
            outs = []
            for n in self.exact:
                site = tr[n]
                outs.append(_unwrap(site["fn"]).v if site["type"] == "sample" else site["value"])
            return outs

        lat_avals = [jax.ShapeDtypeStruct(sites[n].input_shape, sites[n].dtype) for n in latents]
        closed = jax.make_jaxpr(forward)(*lat_avals, *self.ctx_avals)
        program = import_jaxpr(closed, keep_call=_keep_call(cm.table))
        lat_vars = program.invars[: len(latents)]
        ctx_vars = program.invars[len(latents) :]
        for v, n in zip(lat_vars, latents):
            v.label = n
        for n, v in zip(self.exact, program.outvars):
            if v.is_const or v in set(ctx_vars) or not _ancestors_among(program, v, set(lat_vars)):
                raise ConditionError(
                    f"observed site '{n}' does not depend on any latent sample site (it is computed from "
                    "constants, params and model arguments only), so there is nothing to infer from observing "
                    f"it. Remove '{n}' from the data, or compute it from the model's sample sites."
                )
        used = _used_inputs(program)
        upstream = [n for n, v in zip(latents, lat_vars) if v in used]
        self._check_upstream(upstream)
        # More observed values than latent degrees of freedom can only over-determine the latents;
        # say so in the model's terms (sites) before the scheduler says it in the program's.
        m = sum(int(np.prod(sites[n].shape, dtype=np.int64)) for n in self.exact)
        dof = sum(intrinsic_size(sites[n].support, sites[n].shape) for n in upstream)
        if m > dof:
            raise ConditionError(
                f"the observed site(s) {', '.join(repr(n) for n in self.exact)} hold {m} observed values, but the "
                f"latent sites they depend on ({', '.join(repr(n) for n in upstream)}) have only {dof} latent "
                "degrees of freedom; the observations over-determine the latents. Observe fewer values, or "
                "add latent sample sites (e.g. observation noise) to the model."
            )
        self.upstream = upstream
        self.untouched = [n for n in latents if n not in set(upstream)]
        unknown_vars = [v for v, n in zip(lat_vars, latents) if n in set(upstream)]
        ignored = [v for v, n in zip(lat_vars, latents) if n not in set(upstream)]
        supports = {v: _input_support(sites[n]) for v, n in zip(lat_vars, latents) if sites[n].support is not None}
        names = {v: n for v, n in zip(lat_vars, latents)}
        for n in cm.free:
            if n not in upstream:
                raise ConditionError(
                    f"free={n!r}: not a latent sample site the observations depend on "
                    f"({', '.join(repr(u) for u in upstream)}). Name one of those."
                    + "".join(f" Did you mean {c!r}?" for c in difflib.get_close_matches(n, upstream, n=1))
                )
        free_vars = [v for v, n in zip(lat_vars, latents) if n in cm.free]

        def typical():  # a prior draw: where linear solves whose matrix moves with θ choose their chart
            full = self._full_ctx(arg_ctx)

            def prior_draw(full):
                tr = self._run_model(full)
                return [sites[n].to_input(jnp.asarray(tr[n]["value"])) for n in latents]

            # one compiled program: run op by op, a model's prior draw is dozens of programs of its own
            draw = jax.jit(prior_draw)(full) if all(is_concrete(v) for v in full) else prior_draw(full)
            return {**dict(zip(ctx_vars, full)), **dict(zip(lat_vars, draw))}

        def build(free):
            return build_schedule(program, ctx_vars, unknown_vars, program.outvars, supports, cm.table, names,
                                  free=free, outer_theta=False, typical=typical)

        try:
            self.schedule = build(free_vars)
        except InversionError as err:
            if not isinstance(err, NoRuleError):
                # Over-determined or rank-deficient: usually observations that depend on each
                # other. Name the sites, which the scheduler (seeing only variables) cannot.
                _raise_if_dependent(closed, self, upstream, arg_ctx)
            raise type(err)(
                f"while conditioning on {', '.join(repr(n) for n in self.exact)} "
                f"(latents {', '.join(repr(n) for n in upstream)}): {err}"
            ) from None
        self.program = program
        self.ignored = ignored
        self.theta_choice = None
        if cm.choose_theta:  # θ by geometry: the schedule whose solves a sampler meets the fewest walls in
            by_name = dict(zip(latents, lat_vars))
            self.schedule, self.theta_choice = choose_schedule(
                self, program, self.schedule, lambda free: build([by_name[n] for n in free]),
                [n for n in latents if n in cm.free], lambda: self._full_ctx(arg_ctx), ignored)
        self.theta_sites = self._name_theta_sites(dict(zip(lat_vars, latents)))
        clash = set(self.extra_theta_sites) & set(sites)
        if clash:
            raise ConditionError(f"θ site names {sorted(clash)} clash with model sites; pass theta_prefix=... .")

    def _check_upstream(self, upstream):
        sites = self.sites
        discrete = [n for n in upstream if sites[n].discrete]
        if discrete:
            raise ConditionError(
                f"discrete latent site(s) {', '.join(repr(n) for n in discrete)} lie upstream of the exact "
                f"observation(s) {', '.join(repr(n) for n in self.exact)}; inverting through discrete latent "
                "sites is not supported. Marginalise them out by hand (sum the model over their values) or "
                "make them continuous."
            )
        for n in upstream:
            s = sites[n]
            if s.simplex:  # handled: the inverse solves for all entries but the last
                continue
            what = f"latent site '{n}' (upstream of the exact observation(s) {', '.join(map(repr, self.exact))})"
            reason = support_refusal(what, s.support, simplex_hint=" (Simplex supports are handled.)")
            if reason is not None:
                raise ConditionError(reason)

    def _name_theta_sites(self, latent_of_var):
        """θ leaf -> site name: a θ that is a whole latent takes the latent's name.

        Such a θ *is* the latent (the inverse frees it and solves the rest from it), so
        the conditioned model samples the latent itself, as one would write it by hand,
        and no second site repeats its value. A simplex latent is freed as its first
        n−1 entries, which are not the site's value: its θ keeps a ``theta_`` name.
        """
        self.latent_theta = {}
        for step in self.schedule.steps:
            if isinstance(step, FreeStep) and step.var in latent_of_var:
                name = latent_of_var[step.var]
                if not self.sites[name].simplex:
                    self.latent_theta[step.name] = name
        return {n: self.latent_theta.get(n, self.cm.theta_prefix + n) for n in self.schedule.theta}

    @property
    def extra_theta_sites(self):
        """θ sites that are not sites of the original model (null-space coordinates, signs, ...)."""
        return [s for n, s in self.theta_sites.items() if n not in self.latent_theta]

    @property
    def support_unsure(self):
        """Upstream latents whose replayed value may lie outside the site's support.

        Not checked again when replaying: a real support (finiteness is the inverse's
        own final guard, ``run_schedule``), and a latent that *is* a θ with the site's
        own support (the θ site samples it there; ``run_schedule`` checks θ). A solved
        latent with a narrower support is checked by ``run_schedule`` too, but is
        replaced by a safe point outside it, so that the site's log density and its
        gradient stay finite there; a simplex's last entry and a support that holds
        traced values are checked only by the replay.
        """
        if self._support_unsure is None:
            own = {latent: self.schedule.theta[n].support for n, latent in self.latent_theta.items()}
            unsure = {n for n in self.upstream if self.sites[n].support is None or self.sites[n].simplex}
            narrower = [n for n in self.upstream if n not in unsure and is_constrained(self.sites[n].support)
                        and own.get(n) is not self.sites[n].support]
            proven = self._solved_supports() if narrower else {}  # one more trace of the inverse: when it may pay
            unsure.update(n for n in narrower if not _within(proven.get(n), self.sites[n].support))
            self._support_unsure = unsure
        return self._support_unsure

    def _solved_supports(self):
        """Upstream latent -> a support its solve guarantees by construction (``x = exp(·)`` is positive).

        The inverse is traced with nothing known of the observations and the context (their
        values change between calls) and θ in its supports, and supports are carried forward
        through its operations by the rule table's image rules. ``{}`` when it cannot be traced
        or imported: every narrower support is then checked.
        """
        spec = self.schedule.theta
        names = list(spec)
        n_ctx, n_y = len(self.ctx_avals), len(self.program.outvars)

        def solve(*flat):
            theta = dict(zip(names, flat[n_ctx + n_y:]))
            return run_schedule_extra(self.schedule, list(flat[:n_ctx]), list(flat[n_ctx:n_ctx + n_y]), theta)[0]

        avals = (list(self.ctx_avals) + [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in self.program.outvars]
                 + [jax.ShapeDtypeStruct(spec[n].shape, spec[n].dtype) for n in names])
        inputs = [V(a.shape, a.dtype) for a in avals]
        try:
            inverse = import_jaxpr(jax.make_jaxpr(solve)(*avals), keep_call=_keep_call(self.cm.table), inputs=inputs)
        except Exception:  # a proof of supports only: without it, the replay checks them
            return {}
        theta_vars = inputs[n_ctx + n_y:]
        given = {v: spec[n].support for v, n in zip(theta_vars, names) if not spec[n].discrete}
        found = propagate_supports(inverse.eqns, self.cm.table, given)
        return {n: found.get(v) for n, v in zip(self.upstream, inverse.outvars)}

    @property
    def solved(self):
        """Upstream latents computed from θ (``deterministic`` sites of the conditioned model)."""
        return [n for n in self.upstream if n not in set(self.latent_theta.values())]

    # -- running ---------------------------------------------------------------------------
    def observed_values(self, ctx, data=None, params=None):
        """The exact observations' values, in ``self.exact`` order."""
        return self._observed(self._full_ctx(ctx, data, params), data)

    def _observed(self, full_ctx, data=None):
        data = self.cm.data if data is None else data
        delta_vals = jax.extend.core.jaxpr_as_fun(self.delta_obs_jaxpr)(*full_ctx) if self._has_model_deltas else []
        it = iter(delta_vals)
        return [jnp.asarray(data[n]) if self.sites[n].from_data else next(it) for n in self.exact]

    @property
    def _has_model_deltas(self):
        return any(self.sites[n].delta and not self.sites[n].from_data for n in self.exact)

    def invert(self, ctx, theta, data=None, params=None):
        """``(x by site, log|det|, ok)`` for θ given as a dict by θ leaf name.

        ``ctx`` holds the array leaves of the model arguments (``ctx_of``); ``params``
        defaults to the values the enclosing handlers give, ``data`` to ``cm.data``.
        """
        return self._invert(self._full_ctx(ctx, data, params), theta, data)

    def _invert(self, full_ctx, theta, data=None):
        y = self._observed(full_ctx, data)
        xs, log_det, ok = run_schedule(self.schedule, full_ctx, y, theta)
        finite = [jnp.all(jnp.isfinite(v)) for v in y]  # traced data: NaN is outside the domain
        ok = jnp.logical_and(ok, jnp.all(jnp.stack(finite)))
        return {n: self.sites[n].from_input(x) for n, x in zip(self.upstream, xs)}, log_det, ok

    def pgf(self, ctx, latent_values, data=None, params=None):
        """θ (by leaf name) reproducing the given latent values."""
        return self._pgf(self._full_ctx(ctx, data, params), latent_values)

    def _pgf(self, full_ctx, latent_values):
        vals = [self.sites[n].to_input(jnp.asarray(latent_values[n])) for n in self.upstream]
        return schedule_pgf(
            self.schedule,
            self.program,
            full_ctx,
            vals,
            ignored={v: jnp.zeros(v.shape, v.dtype) for v in self.ignored},
        )

    def run(self, args, kwargs, data=None):
        """The conditioned model's body: θ sites, the inverse, the replayed model."""
        data = self.cm.data if data is None else data
        params = self.read_params(args, kwargs)
        full = self._full_ctx(self.ctx_of(args, kwargs), data, params)
        refs = {n: s.reference() for n, s in self.schedule.theta.items()}
        densities = {n: ConditionalDensity(refs[n]) for n in refs}
        given = self._theta_from_given_latents(full)
        theta = {}
        with handlers.substitute(data={self.theta_sites[n]: v for n, v in given.items()}):
            for n, site in self.theta_sites.items():
                theta[n] = numpyro.sample(site, densities[n], infer={"ppinv_theta": n})
        x, log_det, ok = self._invert(full, theta, data)
        replay = _ReplayLatents(x, set(self.exact), self.support_unsure)
        with handlers.substitute(data=params), handlers.condition(data={n: data[n] for n in self.data_names}), replay:
            result = self.cm.model(*args, **kwargs)
        total = replay.log_prob + log_det
        log_density = _inside_or_minus_inf(total, jnp.logical_and(ok, replay.valid))
        self._carry_density(densities, log_density, full, data)
        for n in self.solved:
            numpyro.deterministic(n, replay.values[n])
        return result

    def _carry_density(self, densities, log_density, full_ctx, data):
        """Put the exact conditional on the first θ site (zero on the others).

        Without θ the exact observations fix the latents; their joint density given the
        other latents is then a likelihood, carried by the first exact site, observed.
        """
        if densities:
            first, *rest = densities.values()
            first.share = log_density
            for d in rest:
                d.share = jnp.zeros((), log_density.dtype)
            return
        name = self.exact[0]
        shape = self.sites[name].shape
        value = jnp.broadcast_to(self._observed(full_ctx, data)[0], shape)
        real = constraints.independent(constraints.real, len(shape)) if shape else constraints.real
        numpyro.sample(name, ConditionalDensity(None, log_density, event_shape=shape, support=real), obs=value)

    def _theta_from_given_latents(self, full_ctx):
        """θ from the PGF when the enclosing handlers substitute every solved latent, else ``{}``.

        NumPyro's substitute ignores ``deterministic`` sites; here the solved latents are
        the model's own sites, so values given for all of them (``Predictive`` with the
        samples of ppinv's kernels, which hold the model's sites and no θ) fix θ. Values
        the handlers give for θ sites themselves still take precedence.
        """
        if not self.extra_theta_sites:
            return {}
        values = {}
        for n in self.solved + [u for u in self.upstream if u not in self.solved]:
            v = _substituted_from_outside(n)
            if v is None:
                return {}
            values[n] = v
        return self._pgf(full_ctx, values)


@jax.custom_jvp
def _inside_or_minus_inf(total, inside):
    """``total`` where the point is ``inside`` the domain and ``total`` is finite, else −∞.

    At singular edge points (a branch point, √ at 0) log|det| is ±∞: −∞ too. The
    tangent is ``total``'s own: the gradient is exact wherever the density is finite,
    and where it is −∞ (no sampler follows it there) it is not masked, so that the
    gradient does not need the value's validity and XLA need not compute the value
    again inside the gradient's fused loops.
    """
    return jnp.where(jnp.logical_and(inside, jnp.isfinite(total)), total, -jnp.inf)


@_inside_or_minus_inf.defjvp
def _inside_or_minus_inf_jvp(primals, tangents):
    total, inside = primals
    return _inside_or_minus_inf(total, inside), tangents[0]


class _ReplayLatents(Messenger):
    """Run the original model with the solved latents; hide them and the exact observations.

    Each latent named in ``check`` is replaced by a safe point of its support where
    it lies outside (so no NaN reaches log densities or gradients); ``valid``
    records whether every such value was inside, and ``log_prob`` accumulates the
    densities of all of them. The others are in their supports by construction,
    or checked by the inverse (``_Plan.support_unsure``).
    """

    def __init__(self, values, hidden, check=None):
        super().__init__()
        self.x = values
        self.hidden = hidden
        self.check = set(values) if check is None else set(check)
        self.values = {}
        self.log_prob = jnp.zeros(())
        self.valid = jnp.asarray(True)

    def process_message(self, msg):
        name = msg.get("name")
        if msg["type"] == "sample" and name in self.x:
            fn = msg["fn"]
            value = jnp.asarray(self.x[name], jnp.result_type(msg["value"]) if msg["value"] is not None else None)
            if name in self.check:
                value = self._inside_support(fn, value)
            lp = fn.log_prob(value)
            if msg.get("mask") is not None:
                lp = jnp.where(msg["mask"], lp, 0.0)
            if msg.get("scale") is not None:
                lp = msg["scale"] * lp
            self.log_prob = self.log_prob + jnp.sum(lp)
            self.values[name] = value
            msg["value"] = value
            msg["stop"] = True
        elif name in self.hidden and msg["type"] in ("sample", "deterministic"):
            msg["stop"] = True
            if msg["type"] == "sample" and msg["value"] is None:
                msg["value"] = _unwrap(msg["fn"]).v

    def _inside_support(self, fn, value):
        """``value`` where it lies in ``fn``'s support, else a safe point of it (noted in ``valid``)."""
        ok = jnp.asarray(fn.support(value))
        event_dim = getattr(fn, "event_dim", 0)
        if event_dim and ok.ndim >= event_dim and ok.ndim == jnp.ndim(value):
            ok = jnp.all(ok, axis=tuple(range(-event_dim, 0)))
        self.valid = jnp.logical_and(self.valid, jnp.all(ok))
        safe = jnp.broadcast_to(jnp.asarray(fn.support.feasible_like(value), value.dtype), value.shape)
        okb = jnp.reshape(ok, ok.shape + (1,) * (value.ndim - ok.ndim)) if ok.ndim < value.ndim else ok
        return jnp.where(okb, value, safe)


class ConditionedModel:
    """A NumPyro model conditioned exactly by :func:`condition`.

    Call it like the original model. ``plan(*args, **kwargs)`` exposes the
    inverse used for those arguments (sites, θ, schedule); ``theta_of(samples)``
    gives the θ of samples of the model's latents.
    """

    def __init__(self, model, data, theta_prefix=THETA_PREFIX, free=None, *, choose_theta=True, _check_now=True):
        if not callable(model):
            raise ConditionError(f"model must be callable; got {type(model).__name__}.")
        if not isinstance(data, dict):
            raise ConditionError(f"data must be a dict of site name -> value; got {type(data).__name__}.")
        self.model = model
        self.data = dict(data)
        self.theta_prefix = theta_prefix
        self.free = [free] if isinstance(free, str) else list(free or [])
        self.choose_theta = choose_theta
        self.table = current_table()
        self._plans = {}
        self._with_outside = {}
        for name, value in self.data.items():
            _check_finite(name, value)
        self.__name__ = f"conditioned_{getattr(model, '__name__', 'model')}"
        if _check_now and _takes_no_arguments(model):
            self.plan()  # trace and schedule now, so wrong data fails here rather than at mcmc.run

    def merged(self, data, free=None, theta_prefix=THETA_PREFIX, choose_theta=True):
        """This model's data and ``data`` together (``condition(condition(m, a), b)``)."""
        if not isinstance(data, dict):
            raise ConditionError(f"data must be a dict of site name -> value; got {type(data).__name__}.")
        twice = sorted(set(data) & set(self.data))
        if twice:
            raise ConditionError(
                f"data names {twice} are already conditioned on by the inner ppinv.condition; a site is observed "
                "once. Drop them from one of the two data dicts."
            )
        free = [free] if isinstance(free, str) else list(free or [])
        prefix = theta_prefix if theta_prefix != THETA_PREFIX else self.theta_prefix
        return ConditionedModel(self.model, {**self.data, **data}, theta_prefix=prefix, free=self.free + free,
                                choose_theta=self.choose_theta and choose_theta)

    def plan(self, *args, **kwargs) -> _Plan:
        key = _signature(args, kwargs)
        plan = self._plans.get(key)
        if plan is None:
            # The plan traces the model with its own handlers; the handlers of whoever
            # called us (MCMC's trace, Predictive's substitute, SVI's guide set-up...)
            # must not see those private runs, or they record every site twice.
            with _outside_handlers():
                plan = _Plan(self, args, kwargs)
            self._plans[key] = plan
        return plan

    def __call__(self, *args, **kwargs):
        plan = self.plan(*args, **kwargs)
        given = _conditioned_from_outside(set(plan.upstream) | set(plan.exact))
        if not given:
            return plan.run(args, kwargs)
        data = {**self.data, **given}
        if set(given) <= set(self.data):  # new values of exact observations: the same inverse
            return plan.run(args, kwargs, data)
        return self._conditioned_on(given).plan(*args, **kwargs).run(args, kwargs, data)

    def _conditioned_on(self, given):
        """This model with latents that ``handlers.condition`` observes from outside added to its data.

        One per set of names and shapes; the values themselves are read at every call.
        """
        key = tuple(sorted((n, tuple(_aval(v).shape), str(_aval(v).dtype)) for n, v in given.items()))
        cm = self._with_outside.get(key)
        if cm is None:
            data = {**self.data, **{n: (v if _known(v) else _aval(v)) for n, v in given.items()}}
            free = [f for f in self.free if f not in given]
            cm = ConditionedModel(self.model, data, theta_prefix=self.theta_prefix, free=free,
                                  choose_theta=self.choose_theta, _check_now=False)
            self._with_outside[key] = cm
        return cm

    def theta_of(self, samples, *args, batch_ndims=1, **kwargs):
        """θ sites (by site name) reproducing samples of the model's latents (the PGF, batched).

        ppinv's kernels return the model's own sites; this gives the sampler's
        coordinates when they are wanted (to check their mixing, say).
        """
        plan = self.plan(*args, **kwargs)
        ctx = plan.full_ctx_of(args, kwargs)
        one = lambda lat: {plan.theta_sites[n]: v for n, v in plan._pgf(ctx, lat).items()}  # noqa: E731
        for _ in range(batch_ndims):
            one = jax.vmap(one)
        return one({n: jnp.asarray(samples[n]) for n in plan.upstream})

    def __repr__(self):
        return f"<ppinv.ConditionedModel of {getattr(self.model, '__name__', 'model')} on {sorted(self.data)}>"


# --- helpers -----------------------------------------------------------------------------------
@contextmanager
def _outside_handlers():
    """Run with an empty NumPyro handler stack (restored afterwards)."""
    stack = _primitives._PYRO_STACK
    saved = list(stack)
    del stack[:]
    try:
        yield
    finally:
        stack[:] = saved


def _conditioned_from_outside(names):
    """Values that ``handlers.condition`` messengers around the call give for ``names``.

    Those names are sites of the original model that the conditioned model does not
    sample (solved latents, exact observations) or samples as θ: NumPyro would ignore
    the condition or fix θ instead of the latent, so the model reads it itself.
    Innermost first, so the outermost value wins, as in NumPyro.
    """
    found = {}
    for handler in _primitives._PYRO_STACK:
        if isinstance(handler, handlers.condition) and isinstance(getattr(handler, "data", None), dict):
            found.update({n: v for n, v in handler.data.items() if n in names and v is not None})
    return found


def _substituted_from_outside(name):
    """The value a ``substitute`` around the call gives for the model's site ``name`` (or ``None``).

    A ``substitute_fn`` is asked about a sample site of that name; one that cannot
    answer for a site it has not seen (an init strategy reading the site's
    distribution) is taken to give nothing.
    """
    probe = {"type": "sample", "name": name, "fn": None, "args": (), "kwargs": {}, "value": None,
             "is_observed": False, "infer": {}, "scale": None, "mask": None, "cond_indep_stack": []}
    value = None
    for handler in _primitives._PYRO_STACK:
        if not isinstance(handler, handlers.substitute):
            continue
        data, fn = getattr(handler, "data", None), getattr(handler, "substitute_fn", None)
        if data is not None and name in data:
            value = data[name]
        elif fn is not None:
            try:
                got = fn(dict(probe))
            except Exception:
                got = None
            value = got if got is not None else value
    return value


def _placeholder(msg):
    """A value in the support of an unobserved sample site (to run a model without drawing)."""
    if msg["type"] != "sample" or msg.get("value") is not None:
        return None
    fn = msg["fn"]
    shape = fn.shape(msg["kwargs"].get("sample_shape", ()))
    dtype = jnp.result_type(int) if fn.support.is_discrete else jnp.result_type(float)
    return jnp.broadcast_to(jnp.asarray(fn.support.feasible_like(jnp.zeros(shape, dtype))), shape)


def _takes_no_arguments(model) -> bool:
    try:
        return len(inspect.signature(model).parameters) == 0
    except (TypeError, ValueError):
        return False


def _is_array(x) -> bool:
    """Arguments that are data (values may change between calls without a new plan).

    Python floats count as data: under ``jit`` they arrive as 0-d arrays, and the
    plan must not depend on which. Ints, bools and other objects stay static
    (they may fix shapes or structure).
    """
    if isinstance(x, float):
        return True
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) or not is_concrete(x)


def _signature(args, kwargs):
    leaves, tree = tree_flatten((args, kwargs))
    sig = []
    for leaf in leaves:
        if _is_array(leaf):
            sig.append(("array", tuple(jnp.shape(leaf)), str(jnp.result_type(leaf))))
        else:
            try:
                hash(leaf)
                sig.append(("static", leaf))
            except TypeError:
                sig.append(("object", id(leaf)))
    return tree, tuple(sig)


def _fmt(value):
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else np.array2string(arr, threshold=8)


def _check_finite(name, value):
    if not _known(value):
        return
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise ConditionError(f"data['{name}'] has dtype {arr.dtype}; observations must be numeric.")
    if not np.all(np.isfinite(arr)):
        raise ConditionError(
            f"data['{name}'] contains NaN or inf ({arr!r}); an exact observation must be a finite value."
        )


def _check_value(name, value, shape):
    got = tuple(_aval(value).shape)
    if got != tuple(shape):
        raise ConditionError(
            f"data['{name}'] has shape {got} but site '{name}' has shape {tuple(shape)}; pass an array of the "
            "site's shape."
        )


def _check_sample_data(name, value, site):
    """Data for a sample site: a shape that broadcasts to the site's, inside its support."""
    shape = tuple(_aval(value).shape)
    try:
        ok_shape = np.broadcast_shapes(shape, site.shape) == tuple(site.shape)
    except ValueError:
        ok_shape = False
    if not ok_shape:
        raise ConditionError(
            f"data['{name}'] has shape {shape}, which does not broadcast to the shape {tuple(site.shape)} of "
            f"sample site '{name}'; pass an array of the site's shape."
        )
    if site.support is None or not _known(value):
        return
    try:
        inside = bool(np.all(np.asarray(site.support(jnp.asarray(value)))))
    except Exception:  # a support that cannot check this value: NumPyro will say so
        return
    if not inside:
        raise ConditionError(
            f"data['{name}'] = {_fmt(value)} is outside the support {site.support} of sample site '{name}': the "
            "model gives it zero density, so no point of the conditioned model is valid. Check the value, or "
            "the site's distribution."
        )


def _raise_if_dependent(closed, plan, upstream, ctx):
    """Raise a ConditionError naming the observed sites that depend on the others, if any.

    Evaluated at a draw from the prior: the rows of the Jacobian of the observed values
    with respect to the latents are added site by site; a site whose rows do not raise
    the rank is (partly) determined by the sites before it. A generic point has the
    generic rank, so this only misfires on a measure-zero set of draws.
    """
    if any(not is_concrete(c) for c in ctx) or not all(_known(v) for v in plan.sample_data.values()):
        return  # traced model arguments or data: no point to evaluate at
    try:
        full = plan._full_ctx(ctx)
        model = handlers.condition(plan.cm.model, data=plan.sample_data)
        args, kwargs = plan.rebuild_args(ctx)
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        x0 = [plan.sites[n].to_input(jnp.asarray(tr[n]["value"], plan.sites[n].dtype)) for n in plan.latents]
        fun = jax.extend.core.jaxpr_as_fun(closed)
        sizes = [int(np.prod(plan.sites[n].input_shape, dtype=np.int64)) for n in plan.latents]
        flat0 = jnp.concatenate([jnp.ravel(x) for x in x0]) if x0 else jnp.zeros((0,))

        def f(flat):
            xs, off = [], 0
            for n, k in zip(plan.latents, sizes):
                xs.append(flat[off : off + k].reshape(plan.sites[n].input_shape))
                off += k
            return [jnp.ravel(o) for o in fun(*xs, *full)]

        jac = [np.asarray(j) for j in jax.jacfwd(f)(flat0)]
    except Exception:  # a diagnosis only: the scheduler's own error follows
        return
    rows = np.zeros((0, flat0.size))
    rank = 0
    for i, (n, j) in enumerate(zip(plan.exact, jac)):
        rows = np.concatenate([rows, j.reshape(-1, flat0.size)])
        new = int(np.linalg.matrix_rank(rows)) if rows.size else 0
        if new < rank + j.shape[0]:
            before = plan.exact[:i]
            if before:
                what = f"is (partly) determined by the observed site(s) {', '.join(repr(b) for b in before)}"
            else:
                what = "has components that are determined by its other components"
            raise ConditionError(
                f"observed site '{n}' {what}: the observations are redundant, or contradict each other if "
                f"their values disagree (the Jacobian of the observed values with respect to the latents "
                f"{', '.join(repr(u) for u in upstream)} has rank {new} < {rows.shape[0]}). Observe only "
                f"sites (and components) that are independent of each other: drop '{n}' from the data "
                "(or its obs=), or observe it with noise as an ordinary sample site."
            )
        rank = new


def _within(inner, outer) -> bool:
    """``inner`` is known (not ``None``) and lies inside ``outer``, both intervals of the reals."""
    if inner is None:
        return False
    a, b = support_bounds(inner), support_bounds(outer)
    if a is None or b is None:
        return False
    lo_in = b[0] < a[0] or (b[0] == a[0] and (b[2] or not a[2]))
    hi_in = a[1] < b[1] or (a[1] == b[1] and (b[3] or not a[3]))
    return lo_in and hi_in


def _input_support(site):
    """Support of a latent as an input of the inverted map (see ``_SiteInfo.from_input``)."""
    if site.simplex:
        # each retained entry of a simplex lies in (0, 1); the sum condition is checked
        # when the model is replayed with the whole simplex
        return constraints.independent(constraints.unit_interval, 1)
    return site.support


def _used_inputs(program):
    needed = set(program.outvars)
    for e in reversed(program.eqns):
        if any(o in needed for o in e.outs):
            needed.update(v for v in e.ins if not v.is_const)
    used = needed & set(program.invars)
    return used


def _ancestors_among(program, out, candidates):
    needed = {out}
    for e in reversed(program.eqns):
        if any(o in needed for o in e.outs):
            needed.update(v for v in e.ins if not v.is_const)
    return needed & candidates
