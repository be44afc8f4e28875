"""The plan of a conditioned model: its sites, the inverse of the map from latents to exact
observations, and running it (θ → latents and density; latents → θ)."""

from __future__ import annotations

import difflib

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import tree_flatten
from numpyro import handlers

from .._block import TypicalDraws
from .._compat import is_concrete
from ..errors import ConditionError, InversionError, NoRuleError
from ..ir import ancestors
from ..arguments import support_refusal
from ..inverse import Inverse
from ..schedule import FreeStep
from ..theta import intrinsic_size, is_constrained, support_within
from ..theta_choice import choose_schedule
from .dependence import _raise_if_dependent
from .context import PlanContext
from .feasible import FeasiblePlan
from .running import PlanRunning
from .sites import (
    _aval,
    _check_sample_data,
    _check_value,
    _input_support,
    _is_array,
    _is_delta,
    _SiteInfo,
    _static_support,
    _unwrap,
)

#: prior draws a conditioned model's linear charts are centred and scaled by (the first is its typical point)
TYPICAL_DRAWS = 64


class Plan(FeasiblePlan, PlanContext, PlanRunning):
    """Everything :class:`ConditionedModel` needs for one signature of model arguments.

    The inverted program's known inputs (its context) are, in this order: the
    array leaves of the model arguments, the values of the model's
    ``numpyro.param`` sites, and the data of the sample sites conditioned as
    NumPyro does. All three are read at every call, never baked in.

    Building it is here (which sites exist, the map from latents to exact
    observations and its :class:`~ppinv.Inverse`, θ's site names); assembling the
    context is :class:`~ppinv.conditioning.context.PlanContext`'s job and running the
    conditioned model :class:`~ppinv.conditioning.running.PlanRunning`'s.
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

    def _run_model(self, full_ctx, latents=None, rng_key=0):
        """Trace the model at the given context (arguments, params, sample data) and latent values."""
        n_args, n_params = len(self.arg_avals), len(self.params)
        args, kwargs = self.rebuild_args(full_ctx)
        params = dict(zip(self.params, full_ctx[n_args : n_args + n_params]))
        data = dict(zip(self.data_names, full_ctx[n_args + n_params :]))
        with handlers.trace() as tr, handlers.seed(rng_seed=rng_key), handlers.substitute(
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

        def forward(*lat, context):
            tr = self._run_model(list(context), {n: sites[n].from_input(v) for n, v in zip(latents, lat)})
            outs = []
            for n in self.exact:
                site = tr[n]
                outs.append(_unwrap(site["fn"]).v if site["type"] == "sample" else site["value"])
            return outs

        if not latents:
            self._raise_independent(self.exact[0])
        lat_avals = [jax.ShapeDtypeStruct(sites[n].input_shape, sites[n].dtype) for n in latents]
        for n in cm.free:
            if n not in latents:
                self._raise_free_not_upstream(n, latents)

        drawn = []  # the draws, made once for every schedule the θ choice compares

        def typical(program):
            """Prior draws (the first is the typical point): where linear solves whose matrix moves
            with θ choose, centre and scale their chart."""
            full = self._full_ctx(arg_ctx)

            def prior_draw(full, key):
                tr = self._run_model(full, rng_key=key)
                return [sites[n].to_input(jnp.asarray(tr[n]["value"])) for n in latents]

            keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(TYPICAL_DRAWS))  # key 0: the seed-0 draw
            draws = jax.vmap(prior_draw, in_axes=(None, 0))
            if not all(is_concrete(v) for v in full):  # under a trace: nothing to keep
                values = draws(full, keys)
            else:
                if not drawn:  # one compiled program: op by op, a prior draw is dozens of programs
                    drawn.append(jax.jit(draws)(full, keys))
                values = drawn[0]
            lat_vars, ctx_vars = program.invars[: len(latents)], program.invars[len(latents):]
            stacked = {v: jnp.broadcast_to(c, (TYPICAL_DRAWS,) + jnp.shape(c)) for v, c in zip(ctx_vars, full)}
            return TypicalDraws({**stacked, **dict(zip(lat_vars, values))})

        try:
            inverse = Inverse(
                forward, lat_avals, context={"context": list(self.ctx_avals)},
                support=[_input_support(sites[n]) if sites[n].support is not None else None for n in latents],
                free=list(cm.free), _table=cm.table, _arg_names=latents, _unknown=self._upstream_vars,
                _typical=typical,
            )
        except InversionError as err:
            if not isinstance(err, NoRuleError):
                # Over-determined or rank-deficient: usually observations that depend on each
                # other. Name the sites, which the scheduler (seeing only variables) cannot.
                closed = jax.make_jaxpr(lambda *flat: forward(*flat[: len(latents)], context=flat[len(latents):]))(
                    *lat_avals, *self.ctx_avals)
                _raise_if_dependent(closed, self, self.upstream, arg_ctx)
            raise type(err)(
                f"while conditioning on {', '.join(repr(n) for n in self.exact)} "
                f"(latents {', '.join(repr(n) for n in self.upstream)}): {err}"
            ) from None
        self.inverse = inverse
        self.theta_choice = None
        if cm.choose_theta:  # θ by geometry: the schedule whose solves a sampler meets the fewest walls in
            self.inverse, self.theta_choice = choose_schedule(
                self, inverse, [n for n in latents if n in cm.free], lambda: self._full_ctx(arg_ctx))
        self.theta_sites = self._name_theta_sites(dict(zip(self.program.invars, latents)))
        self.narrow_to_feasible(arg_ctx)  # a scalar θ's support: where the inverse is in its domain
        clash = set(self.extra_theta_sites) & set(sites)
        if clash:
            raise ConditionError(f"θ site names {sorted(clash)} clash with model sites; pass theta_prefix=... .")

    @property
    def schedule(self):
        return self.inverse.schedule

    @property
    def program(self):
        return self.inverse.program

    @property
    def ignored(self):
        """Latent inputs no exact observation depends on: the model samples them itself."""
        return self.inverse.ignored_vars

    def _upstream_vars(self, program, lat_vars):
        """The latent inputs the exact observations depend on, after checking that they make sense."""
        latents, sites = self.latents, self.sites
        ctx_vars = set(program.invars[len(lat_vars):])
        for n, v in zip(self.exact, program.outvars):
            if v.is_const or v in ctx_vars or not ancestors(program, [v]) & set(lat_vars):
                self._raise_independent(n)
        used = ancestors(program, program.outvars)
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
        for n in self.cm.free:
            if n not in upstream:
                self._raise_free_not_upstream(n, upstream)
        self.upstream = upstream
        self.untouched = [n for n in latents if n not in set(upstream)]
        return [v for v, n in zip(lat_vars, latents) if n in set(upstream)]

    @staticmethod
    def _raise_independent(n):
        raise ConditionError(
            f"observed site '{n}' does not depend on any latent sample site (it is computed from "
            "constants, params and model arguments only), so there is nothing to infer from observing "
            f"it. Remove '{n}' from the data, or compute it from the model's sample sites."
        )

    def _raise_free_not_upstream(self, n, upstream):
        raise ConditionError(
            f"free={n!r}: not a latent sample site the observations depend on "
            f"({', '.join(repr(u) for u in upstream)}). Name one of those."
            + "".join(f" Did you mean {c!r}?" for c in difflib.get_close_matches(n, upstream, n=1))
        )

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
            if isinstance(step, FreeStep) and getattr(step, "theta_is_value", True) and step.var in latent_of_var:
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
            unsure.update(n for n in narrower if not support_within(proven.get(n), self.sites[n].support))
            self._support_unsure = unsure
        return self._support_unsure

    def _solved_supports(self):
        """Upstream latent -> a support its solve guarantees by construction (``x = exp(·)`` is positive),
        whatever the observations and the context (their values change between calls)."""
        proven = self.inverse.proven_supports()
        return {n: proven.get(v) for n, v in zip(self.upstream, self.inverse.unknown_vars)}

    @property
    def solved(self):
        """Upstream latents computed from θ (``deterministic`` sites of the conditioned model)."""
        return [n for n in self.upstream if n not in set(self.latent_theta.values())]
