"""``ppinv.inverse``: the parametric inverse of a JAX function."""

from __future__ import annotations

import copy
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import keystr, tree_flatten, tree_flatten_with_path, tree_unflatten
from numpyro.distributions import constraints

from ._compat import call_name
from ._diagnose import diagnose
from ._ir import V, import_jaxpr
from .schedule import build_schedule, propagate_supports, run_schedule, run_schedule_extra, schedule_pgf
from .errors import DomainError, InputError
from .rules import current_table

__all__ = ["inverse", "Inverse", "DomainError", "support_refusal"]


def inverse(f, *example_args, context=None, support=None, free=None):
    """Build the parametric inverse of ``f``.

    ``f`` is traced once at the shapes and dtypes of ``example_args`` (their
    values do not change what the inverse computes; a linear map whose matrix
    depends on other unknowns takes its θ chart from them) and scheduled; the
    result ``inv`` maps ``(y, θ)`` to the inputs ``x`` with ``f(*x) == y``, and
    every such ``x`` is reached by some θ.

    Parameters
    ----------
    f:
        A JAX-traceable function of floating-point arrays (pytrees allowed)
        returning an array or a pytree of arrays.
    *example_args:
        Arguments fixing the shapes and dtypes the inverse is built for: the
        unknowns.
    context:
        Optional dict of *known* keyword arguments of ``f`` (covariates, a design
        matrix, rate constants...): ``f(*x, **context)``. They are inputs of the
        inverse, read at every call and never baked in: ``inv(y, θ,
        context={...})`` takes new values of the same shapes without tracing
        again, and the values given here are the default.
    support:
        Optional NumPyro constraint per argument: a sequence aligned with the
        arguments, a dict by parameter name, or a single constraint for a
        one-argument ``f``. When a variable must be freed, arguments with
        constrained supports are preferred, so θ carries the support and solved
        values need none; solved arguments outside their support put ``(y, θ)``
        outside the domain.
    free:
        Optional argument names (or indices) to make θ first, before ppinv's own
        choice: picks the parametrisation (e.g. free ``e`` in Kepler's
        ``E − e·sin E`` so that ``E`` is solved). Freeing more dimensions than
        ``dim X − dim Y`` is an :class:`~ppinv.errors.UnderdeterminedError`.

    Returns
    -------
    Inverse

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import ppinv
    >>> def f(a, b, c):
    ...     return a * b + c
    >>> inv = ppinv.inverse(f, 1.0, 1.0, 1.0)
    >>> theta = inv.pgf(2.0, 3.0, 1.0)
    >>> a, b, c = inv(7.0, theta)
    >>> float(a * b + c)
    7.0

    A known input as context: the slope of a line through a known point.

    >>> line = ppinv.inverse(lambda w, *, x: w * x, 1.0, context={"x": 2.0})
    >>> [float(v) for v in line(3.0)], [float(v) for v in line(3.0, context={"x": 4.0})]
    ([1.5], [0.75])
    """
    return Inverse(f, example_args, context=context, support=support, free=free)


def _arg_names_of(f, n):
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(n):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY, params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        else:
            names.append(f"arg{i}")
    return names


def _normalize_support(support, arg_names):
    n = len(arg_names)
    if support is None:
        return [None] * n
    if isinstance(support, dict):
        unknown = set(support) - set(arg_names)
        if unknown:
            raise InputError(f"support names {sorted(unknown)} are not parameters of f {arg_names}.")
        return [support.get(a) for a in arg_names]
    if isinstance(support, (list, tuple)):
        if len(support) != n:
            raise InputError(f"support has {len(support)} entries but f takes {n} arguments; give one per argument.")
        return list(support)
    if n == 1:
        return [support]
    raise InputError("support must be a sequence (one constraint per argument) or a dict by argument name.")


def support_refusal(what, support, *, simplex_hint=""):
    """Why ``support`` cannot be an input's support, or ``None`` if it can.

    The scheduler reads supports entry by entry (image rules, monotone intervals,
    the choice of what to free), so a constraint on whole vectors or matrices
    (a simplex, an ordered vector, a positive-definite matrix...) would be read as
    something it is not. ``independent(c, k)`` of an entrywise ``c`` is entrywise.
    Shared by :func:`inverse` and :func:`ppinv.condition`, so both refuse with one message.
    """
    if support is None:
        return None
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    try:
        event_dim = int(base.event_dim)
    except Exception:  # constraints.dependent: no static shape at all
        event_dim = None
    if event_dim == 0:
        return None
    whole = {1: "whole vectors", 2: "whole matrices"}.get(event_dim, "whole arrays")
    return (
        f"{what} has support {support}, a constraint on {whole}"
        + (f" (event_dim {event_dim})" if event_dim is not None else " (of no static event shape)")
        + " rather than on each entry; ppinv carries only entrywise supports (real, positive, intervals, "
        "half-lines, ...) through the relations it inverts, so it cannot invert through this one."
        + simplex_hint
        + " Sample an unconstrained parametrisation instead and transform it in the program (e.g. a vector "
        "of reals mapped by a bijection)."
    )


_SIMPLEX_HINT = (
    " (For a simplex: pass its first n-1 entries and form the last as 1 - their sum inside f; "
    "ppinv.condition does this itself for simplex latent sites.)"
)


def _free_vars(free, arg_names, leaf_names, invars):
    """The input variables named by ``free`` (argument names or indices)."""
    if free is None:
        return []
    if isinstance(free, (str, int)):
        free = [free]
    out = []
    for item in free:
        name = arg_names[item] if isinstance(item, int) and 0 <= item < len(arg_names) else item
        if name not in arg_names:
            raise InputError(f"free={item!r} is not an argument of f {arg_names}; name arguments or give indices.")
        out += [v for v, leaf in zip(invars, leaf_names) if leaf == name or leaf.startswith(name + "[")]
    return out


class Inverse:
    """The parametric inverse of a program; build it with :func:`inverse`.

    Attributes
    ----------
    theta_spec : dict
        ``name -> ThetaSpec`` for each θ leaf.
    theta_support : dict
        ``name -> NumPyro constraint`` for each θ leaf.
    n_theta : int
        Number of continuous θ dimensions (``dim X − dim Y`` for full-rank ``f``).
    program : Program
        ``f`` as ppinv's interpreter reads it: its inputs are the leaves of the
        arguments, then those of the context.
    schedule : Schedule
        The plan of solves, frees and checks that inverts ``program``.
    trace_count : int
        How many times the inverse has been traced (once per input shape).

    ``Inverse`` is the one way ppinv builds an inverse: :func:`ppinv.condition`
    builds the inverse of a model's latents-to-observations map with it too
    (its context: the model's arguments, params and data). The keyword arguments
    that start with ``_`` are for such callers: ``_arg_names`` names the
    arguments, ``_unknown(program, arg_vars)`` says which argument leaves are
    unknown (the others are ignored: no observation depends on them), and
    ``_typical`` gives input values (or a function returning them) where linear
    solves whose matrix moves with θ choose their chart.
    """

    def __init__(self, f, example_args, *, context=None, support=None, free=None, _table=None,
                 _arg_names=None, _unknown=None, _typical=None):
        self.fun = f
        self._table = _table or current_table()
        example_args = tuple(example_args)
        leaves, self._in_tree = tree_flatten(example_args)
        if not leaves:
            raise InputError("ppinv.inverse needs at least one example argument to trace f with.")
        self._arg_names = list(_arg_names) if _arg_names is not None else _arg_names_of(f, len(example_args))
        supports = _normalize_support(support, self._arg_names)
        self._leaf_names, leaf_supports, refusals = self._check_args(example_args, supports)
        if _unknown is None:  # every argument is unknown: refuse before tracing
            _raise_first(refusals)
        self._avals = [_aval_of(x) for x in leaves]
        self._context = self._check_context_dict(context)
        ctx_leaves, self._ctx_tree = tree_flatten(self._context)
        self._ctx_avals = [_aval_of(x) for x in ctx_leaves]
        self._trace(f, leaves, ctx_leaves)
        arg_vars = self.program.invars[: len(leaves)]
        self._ctx_vars = self.program.invars[len(leaves):]
        self._names = dict(zip(arg_vars, self._leaf_names))
        for v, n in self._names.items():
            v.label = n
        for v, (path, _) in zip(self._ctx_vars, tree_flatten_with_path(self._context)[0]):
            v.label = "context" + keystr(path)
        self._supports = {v: s for v, s in zip(arg_vars, leaf_supports) if s is not None}
        self.unknown_vars = list(_unknown(self.program, arg_vars)) if _unknown is not None else list(arg_vars)
        unknown = set(self.unknown_vars)
        _raise_first([r for v, r in zip(arg_vars, refusals) if v in unknown])
        self.ignored_vars = [v for v in arg_vars if v not in unknown]
        if _typical is None:
            _typical = {**dict(zip(arg_vars, leaves)), **dict(zip(self._ctx_vars, ctx_leaves))}
        self._typical = _typical
        self.schedule = self._build_schedule(_free_vars(free, self._arg_names, self._leaf_names, arg_vars))
        self._out_avals = [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in self.program.outvars]
        self.trace_count = 0
        self._run = jax.jit(self.run_flat)
        self._pgf = jax.jit(self.pgf_flat)

    # -- building ------------------------------------------------------------------------
    def _check_args(self, example_args, supports):
        """Leaf names, supports, and per leaf why it cannot be an unknown (or ``None``)."""
        names, leaf_supports, refusals = [], [], []
        for i, arg in enumerate(example_args):
            for path, leaf in tree_flatten_with_path(arg)[0]:
                name = self._arg_names[i] + (keystr(path) if path else "")
                names.append(name)
                leaf_supports.append(supports[i])
                hint = _SIMPLEX_HINT if isinstance(supports[i], type(constraints.simplex)) else ""
                reason = support_refusal(f"argument '{name}'", supports[i], simplex_hint=hint)
                dtype = jnp.result_type(leaf)
                if reason is None and not jnp.issubdtype(dtype, jnp.floating):
                    reason = (
                        f"argument '{name}' has dtype {np.dtype(dtype).name}; parametric inversion needs "
                        "floating-point inputs (a discrete input has no density). Pass a float "
                        "(e.g. 1.0 instead of 1), or pass the value as context if it is known."
                    )
                refusals.append(reason)
        return names, leaf_supports, refusals

    @staticmethod
    def _check_context_dict(context):
        if context is None:
            return {}
        if not isinstance(context, dict):
            raise InputError(
                f"context must be a dict of f's known keyword arguments (context={{'x': x}} for f(..., x=x)); "
                f"got {type(context).__name__}."
            )
        for path, leaf in tree_flatten_with_path(context)[0]:
            if not (isinstance(leaf, (int, float, bool, complex)) or hasattr(leaf, "shape")):
                raise InputError(
                    f"context{keystr(path)} is a {type(leaf).__name__}; context values are arrays (they are "
                    "inputs of the inverse, read at every call). Close over other values in f instead."
                )
        return dict(context)

    def _trace(self, f, leaves, ctx_leaves):
        n = len(leaves)
        out_tree_box = []

        def flat_f(*flat):
            ctx = tree_unflatten(self._ctx_tree, flat[n:])
            out = f(*tree_unflatten(self._in_tree, flat[:n]), **ctx)
            out_leaves, out_tree = tree_flatten(out)
            out_tree_box.append(out_tree)
            return out_leaves

        try:
            closed = jax.make_jaxpr(flat_f)(*self._avals, *self._ctx_avals)
        except TypeError as strong_error:
            # Some programs trace only with the weak types of Python-scalar arguments (a loop whose
            # body casts its carry to float32 promotes a weak initial value, not a strong one).
            weak = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=_weak(x)) for a, x in zip(self._avals, leaves)]
            if not any(a.weak_type for a in weak):
                raise
            out_tree_box.clear()
            try:
                closed = jax.make_jaxpr(flat_f)(*weak, *self._ctx_avals)
            except TypeError:
                raise strong_error from None
            self._avals = weak
        self.closed_jaxpr = closed
        self._out_tree = out_tree_box[0]
        self._out_names = _leaf_paths(self._out_tree)
        self.program = import_jaxpr(closed, keep_call=_keep_call(self._table))

    def _build_schedule(self, free_vars):
        return build_schedule(
            self.program, self._ctx_vars, self.unknown_vars, self.program.outvars, self._supports, self._table,
            self._names, free=free_vars, outer_theta=False, typical=self._typical,
        )

    def with_free(self, free):
        """This inverse with other inputs freed first (argument names or indices): the program is
        not traced again, only scheduled.

        >>> import ppinv
        >>> inv = ppinv.inverse(lambda a, b: a * b, 1.0, 1.0)
        >>> list(inv.with_free(["a"]).theta_spec) == ["a"]
        True
        """
        arg_vars = self.program.invars[: len(self._avals)]
        free_vars = _free_vars(free, self._arg_names, self._leaf_names, arg_vars)
        other = copy.copy(self)
        other.schedule = self._build_schedule(free_vars)
        other.trace_count = 0
        other._run = jax.jit(other.run_flat)
        other._pgf = jax.jit(other.pgf_flat)
        return other

    # -- θ ----------------------------------------------------------------------------
    @property
    def theta_spec(self):
        return dict(self.schedule.theta)

    @property
    def theta_support(self):
        return {n: s.support for n, s in self.schedule.theta.items()}

    @property
    def n_theta(self) -> int:
        return self.schedule.n_theta

    def theta_reference(self):
        """``name -> distribution``: a proper reference distribution on each θ leaf's support."""
        return {n: s.reference() for n, s in self.schedule.theta.items()}

    def sample_theta(self, key, sample_shape=()):
        """Draw θ from the reference distributions (useful for proposals and tests)."""
        refs = self.theta_reference()
        keys = jax.random.split(key, max(len(refs), 1))
        return {n: d.sample(k, tuple(sample_shape)) for (n, d), k in zip(refs.items(), keys)}

    # -- running on flat leaves -----------------------------------------------------------
    def run_flat(self, ctx_leaves, y_leaves, theta):
        """``(x leaves of the unknowns, log|det|, ok)`` from flat context and output leaves.

        Not jitted and not checked: for callers that trace it inside their own
        programs (a conditioned model's density). ``ok`` is False where a recovered
        ``x`` is not finite, a relation was solved outside its domain, or ``y`` is not finite.
        """
        self.trace_count += 1
        xs, log_det, ok = run_schedule(self.schedule, list(ctx_leaves), y_leaves, theta)
        # a NaN or infinite y has no preimage, whatever the schedule computes from it
        finite = [jnp.all(jnp.isfinite(y)) for y in y_leaves]
        return xs, log_det, jnp.logical_and(ok, jnp.all(jnp.stack(finite))) if finite else ok

    def pgf_flat(self, ctx_leaves, x_leaves):
        """θ (by name) from flat context leaves and the values of the unknown input leaves."""
        ignored = {v: jnp.zeros(v.shape, v.dtype) for v in self.ignored_vars}
        return schedule_pgf(self.schedule, self.program, list(ctx_leaves), x_leaves, ignored=ignored)

    def proven_supports(self, known_signs=None):
        """Unknown input -> a support its solve guarantees by construction (``x = exp(·)`` is positive).

        The inverse is traced with θ in its supports and the context and observations
        unknown, or known only by the supports in ``known_signs`` (``{"context": [...],
        "y": [...]}``, one constraint or ``None`` per leaf, e.g. ``y = 2`` is positive),
        and supports are carried forward through its operations by the rule table's
        image rules. ``{}`` when the inverse cannot be traced or imported.
        """
        spec = self.schedule.theta
        names = list(spec)
        n_ctx, n_y = len(self._ctx_avals), len(self._out_avals)

        def solve(*flat):
            theta = dict(zip(names, flat[n_ctx + n_y:]))
            return run_schedule_extra(self.schedule, list(flat[:n_ctx]), list(flat[n_ctx:n_ctx + n_y]), theta)[0]

        avals = (list(self._ctx_avals) + list(self._out_avals)
                 + [jax.ShapeDtypeStruct(spec[n].shape, spec[n].dtype) for n in names])
        inputs = [V(a.shape, a.dtype) for a in avals]
        try:
            inverse = import_jaxpr(jax.make_jaxpr(solve)(*avals), keep_call=_keep_call(self._table), inputs=inputs)
        except Exception:  # a proof of supports only: without it, the supports are checked
            return {}
        given = {v: spec[n].support for v, n in zip(inputs[n_ctx + n_y:], names) if not spec[n].discrete}
        if known_signs is not None:
            signs = list(known_signs.get("context", [None] * n_ctx)) + list(known_signs.get("y", [None] * n_y))
            given.update({v: s for v, s in zip(inputs, signs) if s is not None})
            # constants too: a guarded division's safe value (``where(a != 0, a, 1)``) is a positive one
            given.update({v: s for e in inverse.eqns for v in e.ins
                          if v.is_const and (s := sign_support(v.value)) is not None})
        found = propagate_supports(inverse.eqns, self._table, given)
        return {u: found.get(out) for u, out in zip(self.schedule.unknown_inputs, inverse.outvars)}

    # -- checking what users pass -----------------------------------------------------------
    def _check_context(self, context):
        if context is None:
            return tree_flatten(self._context)[0]
        leaves, tree = tree_flatten(self._check_context_dict(context))
        if tree != self._ctx_tree:
            raise InputError(
                f"context has structure {tree} but the inverse was built with {self._ctx_tree}; pass the same "
                "keys (build another inverse for other ones)."
            )
        out = []
        for (path, _), leaf, aval in zip(tree_flatten_with_path(self._context)[0], leaves, self._ctx_avals):
            leaf = jnp.asarray(leaf)
            if leaf.shape != aval.shape:
                raise InputError(
                    f"context{keystr(path)} has shape {leaf.shape}; the inverse was built for {aval.shape}."
                )
            out.append(leaf.astype(aval.dtype))
        return out

    def _check_y(self, y):
        leaves, tree = tree_flatten(y)
        if tree != self._out_tree:
            raise InputError(f"y has structure {tree} but f returns {self._out_tree}.")
        out = []
        for i, (leaf, aval) in enumerate(zip(leaves, self._out_avals)):
            # judged on the value as given: under jit, jnp.asarray of a constant is a tracer
            given = np.asarray(leaf) if _concrete(leaf) else None
            leaf = jnp.asarray(leaf)
            if not jnp.issubdtype(leaf.dtype, jnp.floating) and not jnp.issubdtype(leaf.dtype, jnp.integer):
                raise InputError(f"y leaf {i} has dtype {leaf.dtype}; expected {aval.dtype}.")
            if leaf.shape != aval.shape:
                raise InputError(
                    f"y leaf {i} has shape {leaf.shape} but f's output {i} has shape {aval.shape}. "
                    "(To evaluate many y at once, wrap the call in jax.vmap.)"
                )
            if given is not None and not np.all(np.isfinite(given)):
                raise InputError(
                    f"y{self._out_names[i]} (output {i} of {getattr(self.fun, '__name__', 'f')}) is "
                    f"{np.array2string(given, threshold=8)}, which "
                    "contains NaN or inf; an observation must be finite (a non-finite value has no preimage). "
                    "Under jit such a y is outside the domain: in_domain is False and log_abs_det_jacobian -inf."
                )
            out.append(leaf.astype(aval.dtype))
        return out

    def _check_theta(self, theta):
        spec = self.schedule.theta
        if theta is None:
            theta = {}
        if not isinstance(theta, dict):
            raise InputError(f"theta must be a dict with keys {list(spec)}; got {type(theta).__name__}.")
        missing, extra = set(spec) - set(theta), set(theta) - set(spec)
        if missing or extra:
            raise InputError(
                f"theta has the wrong keys: missing {sorted(missing)}, unexpected {sorted(extra)}. "
                f"Expected {list(spec)} (see inv.theta_spec)."
            )
        out = {}
        for name, s in spec.items():
            val = jnp.asarray(theta[name])
            if val.shape != tuple(s.shape):
                raise InputError(
                    f"theta['{name}'] has shape {val.shape}; expected {tuple(s.shape)} ({s.describe()})."
                )
            if s.discrete:
                if not (jnp.issubdtype(val.dtype, jnp.integer) or val.dtype == jnp.bool_):
                    raise InputError(
                        f"theta['{name}'] is a discrete choice ({s.kind}) and needs an integer dtype; got {val.dtype}."
                    )
            elif not jnp.issubdtype(val.dtype, jnp.floating):
                raise InputError(f"theta['{name}'] is continuous and needs a floating dtype; got {val.dtype}.")
            out[name] = val.astype(s.dtype)
        return out

    def _raw(self, y, theta, context):
        if self.ignored_vars:
            raise InputError("this inverse ignores some inputs (built for a conditioned model); use run_flat.")
        return self._run(self._check_context(context), self._check_y(y), self._check_theta(theta))

    def _unflatten_x(self, xs):
        return tuple(tree_unflatten(self._in_tree, xs))

    # -- running ------------------------------------------------------------------------
    def __call__(self, y, theta=None, *, context=None):
        """Return ``x`` (a tuple like ``f``'s arguments) with ``f(*x, **context) == y``.

        Outside the domain (no preimage for this ``y`` and θ) an eager call
        raises :class:`~ppinv.errors.DomainError` naming the relation that
        failed: its primitive, the line of ``f`` it comes from, the offending
        values, and whether ``y`` is outside the range of ``f`` or θ picks no
        preimage. (The schedule is then run once more, eagerly and step by step,
        to find it; a call inside the domain costs nothing extra.) Under
        ``jit``/``vmap`` nothing is raised: the returned values are NaN there.
        A NaN or infinite ``y`` has no preimage: an eager call raises
        :class:`InputError` naming the output; under ``jit`` it is outside the domain.

        >>> import jax.numpy as jnp
        >>> import ppinv
        >>> def f(x):
        ...     return jnp.arcsin(x) * 2.0
        >>> inv = ppinv.inverse(f, 0.5)
        >>> [round(float(v), 6) for v in inv(1.0)]
        [0.479426]
        >>> inv(4.0)
        Traceback (most recent call last):
          ...
        ppinv.errors.DomainError: asin at ...: asin(x) = 2.0 has no solution for x ...
        """
        xs, _, ok = self._raw(y, theta, context)
        if _concrete(ok) and not (bool(ok) and _all_finite(xs)):
            raise DomainError(self._domain_message(y, theta, context))
        xs = [jnp.where(ok, x, jnp.nan) for x in xs]
        return self._unflatten_x(xs)

    def log_abs_det_jacobian(self, y, theta=None, *, context=None):
        """``log|det ∂x/∂(y, θ_continuous)|``; −∞ outside the domain (never NaN)."""
        _, log_det, ok = self._raw(y, theta, context)
        return jnp.where(ok & ~jnp.isnan(log_det), log_det, -jnp.inf)

    def with_log_det(self, y, theta=None, *, context=None):
        """``(x, log|det|)`` in one pass; outside the domain ``x`` is NaN and ``log|det|`` is −∞."""
        xs, log_det, ok = self._raw(y, theta, context)
        xs = [jnp.where(ok, x, jnp.nan) for x in xs]
        return self._unflatten_x(xs), jnp.where(ok & ~jnp.isnan(log_det), log_det, -jnp.inf)

    def in_domain(self, y, theta=None, *, context=None):
        """True where ``(y, θ)`` has a preimage."""
        return self._raw(y, theta, context)[2]

    def pgf(self, *x, context=None):
        """θ such that ``inv(f(*x, **context), θ)`` reproduces ``x``."""
        leaves, tree = tree_flatten(tuple(x))
        if tree != self._in_tree:
            raise InputError(f"pgf expects arguments shaped like f's: {self._in_tree}, got {tree}.")
        for name, leaf, aval in zip(self._leaf_names, leaves, self._avals):
            if jnp.shape(leaf) != aval.shape:
                raise InputError(f"argument '{name}' has shape {jnp.shape(leaf)}; expected {aval.shape}.")
        return self._pgf(self._check_context(context), [jnp.asarray(v, a.dtype) for v, a in zip(leaves, self._avals)])

    def forward(self, *x, context=None):
        """``f(*x, **context)`` (the context the inverse was built with by default)."""
        return self.fun(*x, **(self._context if context is None else context))

    def describe(self) -> str:
        """The schedule, one step per line."""
        head = [f"parametric inverse of {getattr(self.fun, '__name__', 'f')}: {self.n_theta} continuous θ dims"]
        for n, s in self.schedule.theta.items():
            head.append(f"  θ[{n!r}]: {s.describe()}")
        return "\n".join(head) + "\n" + self.schedule.describe()

    def __repr__(self):
        return f"<ppinv.Inverse of {getattr(self.fun, '__name__', 'f')} θ={list(self.schedule.theta)}>"

    def _domain_message(self, y, theta, context=None):
        """Why ``(y, θ)`` has no preimage: the first step of an eager, step-by-step run that fails."""
        fname = getattr(self.fun, "__name__", "f")
        try:
            why = diagnose(self.schedule, self._check_y(y), self._check_theta(theta), fname,
                           known=self._check_context(context))
        except Exception:  # noqa: BLE001 - a diagnosis must never hide the DomainError itself
            why = None
        if why is None:
            why = (
                "some relation was solved outside its domain (for example the log of a negative number, "
                "the arcsine of a value beyond ±1, or a solved argument outside its support). "
                f"Check that y is in the range of {fname}."
            )
        return (
            f"{why}\n(y={y!r} with theta={theta!r} has no preimage under {fname}; under jit the values are NaN "
            "here and inv.log_abs_det_jacobian is -inf.)"
        )


def _raise_first(refusals):
    for reason in refusals:
        if reason is not None:
            raise InputError(reason)


def sign_support(value):
    """``positive`` / ``nonnegative`` for a concrete floating value whose entries all are, else ``None``."""
    x = np.asarray(value)
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return None
    if np.all(x > 0):
        return constraints.positive
    return constraints.nonnegative if np.all(x >= 0) else None


def _aval_of(x):
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def _weak(x):
    try:
        return bool(jnp.asarray(x).weak_type)
    except TypeError:  # an abstract example (a ShapeDtypeStruct) has no weak type
        return False


def _concrete(x):
    return not isinstance(x, jax.core.Tracer)


def _all_finite(xs):
    """No NaN or infinity in the concrete values: a non-finite x is never a preimage of a finite y.
    (Under ``grad`` the flag can be concrete while the values are traced: those are not judged.)"""
    return all(not _concrete(x) or bool(np.all(np.isfinite(np.asarray(x)))) for x in xs)


def _leaf_paths(tree):
    """``keystr`` of each leaf of a tree structure (``""`` for a single array)."""
    dummy = tree_unflatten(tree, list(range(tree.num_leaves)))
    return [keystr(path) for path, _ in tree_flatten_with_path(dummy)[0]]


def _keep_call(table):
    def keep(eqn):
        name = call_name(eqn.primitive, eqn.params)
        return name is not None and table.function_rule(name) is not None

    return keep
