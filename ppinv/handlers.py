"""``ppinv.condition``: exact conditioning of NumPyro models on deterministic observations.

NumPyro's ``condition`` silently ignores ``deterministic`` sites, and a
``Delta`` likelihood is −∞ almost everywhere. :func:`condition` instead
inverts the map from the latent sites to the observed values and returns an
ordinary NumPyro model over the parameters θ of that inverse:

* its sample sites are the θ sites (named ``theta_<name>``; continuous ones
  carry their supports, discrete ones are integer sites) and the latents that
  no observation depends on;
* one ``factor`` adds ``log p_X(x) + log|det ∂x/∂(y, θ)|`` (each θ site's
  reference density is cancelled, so only the exact conditional remains);
* the original latents come back as ``deterministic`` sites under their own
  names, and each observed site reports the observed value.

Because the result is a plain NumPyro model, NUTS, HMC, DiscreteHMCGibbs, SVI
and Predictive all work on it; :mod:`ppinv.infer` adds kernels that start
from valid points and move between branches.
"""

from __future__ import annotations

import difflib
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
from numpyro.primitives import Messenger

from ._compat import is_concrete
from ._ir import import_jaxpr
from ._schedule import build_schedule, run_schedule, schedule_pgf
from .errors import ConditionError, InversionError, NoRuleError
from .inverse import _keep_call
from .rules import current_table
from .theta import intrinsic_size

__all__ = ["condition", "ConditionedModel", "THETA_PREFIX", "FACTOR_NAME"]

THETA_PREFIX = "theta_"
FACTOR_NAME = "_ppinv_log_density"


def condition(model, data=None, *, free=None, theta_prefix: str = THETA_PREFIX):
    """Condition ``model`` exactly on ``data``.

    Parameters
    ----------
    model:
        A NumPyro model (a callable with ``numpyro.sample``/``deterministic`` sites).
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
        Prefix of the θ site names.

    Returns
    -------
    ConditionedModel
        A NumPyro model taking the original model's arguments.

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
    return ConditionedModel(model, data or {}, theta_prefix=theta_prefix, free=free)


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
        return isinstance(self.support, type(dist.constraints.simplex))

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
    """Everything :class:`ConditionedModel` needs for one signature of model arguments."""

    def __init__(self, cm, args, kwargs):
        self.cm = cm
        leaves, self.arg_tree = tree_flatten((args, kwargs))
        self.dynamic = [_is_array(leaf) for leaf in leaves]
        self.static_leaves = [None if d else leaf for d, leaf in zip(self.dynamic, leaves)]
        ctx = [jnp.asarray(leaf) for leaf, d in zip(leaves, self.dynamic) if d]
        self.ctx_avals = [jax.ShapeDtypeStruct(c.shape, c.dtype) for c in ctx]
        self._discover()
        self._build_inverse(ctx)

    # -- argument plumbing ---------------------------------------------------------------
    def rebuild_args(self, ctx):
        it = iter(ctx)
        leaves = [next(it) if d else s for d, s in zip(self.dynamic, self.static_leaves)]
        return tree_unflatten(self.arg_tree, leaves)

    @staticmethod
    def ctx_of(args, kwargs):
        leaves, _ = tree_flatten((args, kwargs))
        return [jnp.asarray(leaf) for leaf in leaves if _is_array(leaf)]

    # -- pass 1: which sites exist ------------------------------------------------------------
    def _discover(self):
        cm = self.cm
        sites = {}
        sample_data_keys = []

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
                    if info.delta and (site["is_observed"] or name in cm.data):
                        info.kind, info.from_data = "exact", name in cm.data
                    elif name in cm.data:
                        info.kind = "observed"
                        sample_data_keys.append(name)
                    elif site["is_observed"]:
                        info.kind = "observed"
                    else:
                        info.kind = "latent"
                        info.support = _static_support(fn)
                sites[name] = info
            # observed values of Delta sites that carry obs= in the model
            return [tr[n]["value"] for n, s in sites.items() if s.kind == "exact" and s.delta and not s.from_data]

        self.delta_obs_jaxpr = jax.make_jaxpr(probe)(*self.ctx_avals)
        self.sites = sites
        self.sample_data = {k: cm.data[k] for k in sample_data_keys}
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
        self.exact = [n for n, s in sites.items() if s.kind == "exact"]
        if not self.exact:
            raise ConditionError(
                "nothing to condition exactly: no data key names a deterministic or Delta site, and the "
                "model has no observed Delta site. For ordinary observations use numpyro.handlers.condition."
            )
        self.latents = [n for n, s in sites.items() if s.kind == "latent"]
        for n in self.exact:
            s = sites[n]
            if s.from_data:
                _check_value(n, cm.data[n], s.shape)

    # -- pass 2: the map latents -> exact observations, and its inverse ------------------------
    def _build_inverse(self, ctx):
        cm = self.cm
        latents = self.latents
        sites = self.sites

        def forward(*flat):
            lat = {n: sites[n].from_input(v) for n, v in zip(latents, flat[: len(latents)])}
            args, kwargs = self.rebuild_args(flat[len(latents) :])
            with handlers.trace() as tr, handlers.seed(rng_seed=0), handlers.substitute(data=lat), handlers.condition(
                data=self.sample_data
            ):
                cm.model(*args, **kwargs)
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
                    "constants and model arguments only), so there is nothing to infer from observing it. "
                    f"Remove '{n}' from the data, or compute it from the model's sample sites."
                )
        used = _used_inputs(program)
        upstream = [n for n, v in zip(latents, lat_vars) if v in used]
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
            if not s.simplex and intrinsic_size(s.support, s.shape) < int(np.prod(s.shape, dtype=np.int64)):
                raise ConditionError(
                    f"latent site '{n}' has support {s.support}, a manifold of lower dimension than its shape "
                    f"{s.shape}, and lies upstream of the exact observation(s) "
                    f"{', '.join(repr(e) for e in self.exact)}; inverting through such a site is not supported "
                    "(simplex supports are). Sample an unconstrained parametrisation of it and transform it "
                    "in the model (e.g. a vector of reals mapped by a bijection) instead."
                )
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
        try:
            self.schedule = build_schedule(
                program, ctx_vars, unknown_vars, program.outvars, supports, cm.table, names, free=free_vars,
                outer_theta=False,
            )
        except InversionError as err:
            if not isinstance(err, NoRuleError):
                # Over-determined or rank-deficient: usually observations that depend on each
                # other. Name the sites, which the scheduler (seeing only variables) cannot.
                _raise_if_dependent(closed, self, upstream, ctx)
            raise type(err)(
                f"while conditioning on {', '.join(repr(n) for n in self.exact)} "
                f"(latents {', '.join(repr(n) for n in upstream)}): {err}"
            ) from None
        self.program = program
        self.ignored = ignored
        self.theta_sites = {n: cm.theta_prefix + n for n in self.schedule.theta}
        clash = set(self.theta_sites.values()) & set(sites)
        if clash:
            raise ConditionError(f"θ site names {sorted(clash)} clash with model sites; pass theta_prefix=... .")

    # -- running ---------------------------------------------------------------------------
    def observed_values(self, ctx):
        delta_vals = jax.extend.core.jaxpr_as_fun(self.delta_obs_jaxpr)(*ctx) if self._has_model_deltas else []
        it = iter(delta_vals)
        out = []
        for n in self.exact:
            s = self.sites[n]
            out.append(jnp.asarray(self.cm.data[n]) if s.from_data else next(it))
        return out

    @property
    def _has_model_deltas(self):
        return any(self.sites[n].delta and not self.sites[n].from_data for n in self.exact)

    def invert(self, ctx, theta):
        """``(x by site, log|det|, ok)`` for θ given as a dict by θ leaf name."""
        y = self.observed_values(ctx)
        xs, log_det, ok = run_schedule(self.schedule, ctx, y, theta)
        return {n: self.sites[n].from_input(x) for n, x in zip(self.upstream, xs)}, log_det, ok

    def pgf(self, ctx, latent_values):
        """θ (by leaf name) reproducing the given latent values."""
        vals = [self.sites[n].to_input(jnp.asarray(latent_values[n])) for n in self.upstream]
        return schedule_pgf(
            self.schedule,
            self.program,
            ctx,
            vals,
            ignored={v: jnp.zeros(v.shape, v.dtype) for v in self.ignored},
        )

    def run(self, args, kwargs):
        ctx = self.ctx_of(args, kwargs)
        refs = {n: s.reference() for n, s in self.schedule.theta.items()}
        theta = {}
        for n, site in self.theta_sites.items():
            theta[n] = numpyro.sample(site, refs[n], infer={"ppinv_theta": n})
        x, log_det, ok = self.invert(ctx, theta)
        replay = _ReplayLatents(x, set(self.exact))
        with handlers.condition(data=self.sample_data), replay:
            result = self.cm.model(*args, **kwargs)
        ref_lp = sum((refs[n].log_prob(theta[n]) for n in theta), jnp.zeros(()))
        total = replay.log_prob + log_det - ref_lp
        # at singular edge points (a branch point, √ at 0) log|det| is ±inf: treat as −inf
        valid = jnp.logical_and(jnp.logical_and(ok, replay.valid), jnp.isfinite(total))
        numpyro.factor(FACTOR_NAME, jnp.where(valid, total, -jnp.inf))
        for n in self.upstream:
            numpyro.deterministic(n, replay.values[n])
        y = self.observed_values(ctx)
        for n, val in zip(self.exact, y):
            numpyro.deterministic(n, jnp.broadcast_to(jnp.asarray(val), self.sites[n].shape))
        return result


class _ReplayLatents(Messenger):
    """Run the original model with the solved latents; hide them and the exact observations.

    Each solved latent is replaced by a safe point of its support where it lies
    outside (so no NaN reaches log densities or gradients); ``valid`` records
    whether every value was inside, and ``log_prob`` accumulates their densities.
    """

    def __init__(self, values, hidden):
        super().__init__()
        self.x = values
        self.hidden = hidden
        self.values = {}
        self.log_prob = jnp.zeros(())
        self.valid = jnp.asarray(True)

    def process_message(self, msg):
        name = msg.get("name")
        if msg["type"] == "sample" and name in self.x:
            fn = msg["fn"]
            value = jnp.asarray(self.x[name], jnp.result_type(msg["value"]) if msg["value"] is not None else None)
            ok = jnp.asarray(fn.support(value))
            event_dim = getattr(fn, "event_dim", 0)
            if event_dim and ok.ndim >= event_dim and ok.ndim == jnp.ndim(value):
                ok = jnp.all(ok, axis=tuple(range(-event_dim, 0)))
            safe = jnp.broadcast_to(jnp.asarray(fn.support.feasible_like(value), value.dtype), value.shape)
            okb = jnp.reshape(ok, ok.shape + (1,) * (value.ndim - ok.ndim)) if ok.ndim < value.ndim else ok
            value = jnp.where(okb, value, safe)
            lp = fn.log_prob(value)
            if msg.get("mask") is not None:
                lp = jnp.where(msg["mask"], lp, 0.0)
            if msg.get("scale") is not None:
                lp = msg["scale"] * lp
            self.log_prob = self.log_prob + jnp.sum(lp)
            self.valid = jnp.logical_and(self.valid, jnp.all(ok))
            self.values[name] = value
            msg["value"] = value
            msg["stop"] = True
        elif name in self.hidden and msg["type"] in ("sample", "deterministic"):
            msg["stop"] = True
            if msg["type"] == "sample" and msg["value"] is None:
                msg["value"] = _unwrap(msg["fn"]).v


class ConditionedModel:
    """A NumPyro model conditioned exactly by :func:`condition`.

    Call it like the original model. ``plan(*args, **kwargs)`` exposes the
    inverse used for those arguments (sites, θ, schedule).
    """

    def __init__(self, model, data, theta_prefix=THETA_PREFIX, free=None):
        if not callable(model):
            raise ConditionError(f"model must be callable; got {type(model).__name__}.")
        if not isinstance(data, dict):
            raise ConditionError(f"data must be a dict of site name -> value; got {type(data).__name__}.")
        self.model = model
        self.data = dict(data)
        self.theta_prefix = theta_prefix
        self.free = [free] if isinstance(free, str) else list(free or [])
        self.table = current_table()
        self._plans = {}
        for name, value in self.data.items():
            _check_finite(name, value)
        self.__name__ = f"conditioned_{getattr(model, '__name__', 'model')}"

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
        return self.plan(*args, **kwargs).run(args, kwargs)

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


def _check_finite(name, value):
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise ConditionError(f"data['{name}'] has dtype {arr.dtype}; observations must be numeric.")
    if not np.all(np.isfinite(arr)):
        raise ConditionError(
            f"data['{name}'] contains NaN or inf ({arr!r}); an exact observation must be a finite value."
        )


def _check_value(name, value, shape):
    got = tuple(jnp.shape(value))
    if got != tuple(shape):
        raise ConditionError(
            f"data['{name}'] has shape {got} but site '{name}' has shape {tuple(shape)}; pass an array of the "
            "site's shape."
        )


def _raise_if_dependent(closed, plan, upstream, ctx):
    """Raise a ConditionError naming the observed sites that depend on the others, if any.

    Evaluated at a draw from the prior: the rows of the Jacobian of the observed values
    with respect to the latents are added site by site; a site whose rows do not raise
    the rank is (partly) determined by the sites before it. A generic point has the
    generic rank, so this only misfires on a measure-zero set of draws.
    """
    if any(not is_concrete(c) for c in ctx):  # traced model arguments: no point to evaluate at
        return
    try:
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
            return [jnp.ravel(o) for o in fun(*xs, *ctx)]

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


def _input_support(site):
    """Support of a latent as an input of the inverted map (see ``_SiteInfo.from_input``)."""
    if site.simplex:
        # each retained entry of a simplex lies in (0, 1); the sum condition is checked
        # when the model is replayed with the whole simplex
        return dist.constraints.independent(dist.constraints.unit_interval, 1)
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
