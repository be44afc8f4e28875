"""``ppinv.inverse``: the parametric inverse of a JAX function."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
from jax.tree_util import keystr, tree_flatten, tree_flatten_with_path, tree_unflatten

from ._diagnose import diagnose
from .ir import V, import_jaxpr
from .schedule import build_schedule, propagate_supports, run_schedule, run_schedule_extra, schedule_pgf
from .arguments import (
    aval_of,
    all_finite,
    arg_names_of,
    check_context,
    check_theta,
    check_y,
    concrete,
    context_dict,
    free_vars,
    is_weak,
    leaf_paths,
    leaf_refusals,
    normalize_support,
    raise_first,
    sign_support,
    support_refusal,
)
from .errors import DomainError, InputError
from .rules import current_table
from .rules.table import keep_call as _keep_call

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
    ``_typical(program)`` gives input values (by program input) where linear
    solves whose matrix moves with θ choose their chart, drawn only if one asks.
    """

    def __init__(self, f, example_args, *, context=None, support=None, free=None, _table=None,
                 _arg_names=None, _unknown=None, _typical=None):
        self.fun = f
        self._table = _table or current_table()
        example_args = tuple(example_args)
        leaves, self._in_tree = tree_flatten(example_args)
        if not leaves:
            raise InputError("ppinv.inverse needs at least one example argument to trace f with.")
        self._arg_names = list(_arg_names) if _arg_names is not None else arg_names_of(f, len(example_args))
        supports = normalize_support(support, self._arg_names)
        self._leaf_names, leaf_supports, refusals = leaf_refusals(example_args, self._arg_names, supports)
        if _unknown is None:  # every argument is unknown: refuse before tracing
            raise_first(refusals)
        self._avals = [aval_of(x) for x in leaves]
        self._context = context_dict(context)
        ctx_leaves, self._ctx_tree = tree_flatten(self._context)
        self._ctx_avals = [aval_of(x) for x in ctx_leaves]
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
        raise_first([r for v, r in zip(arg_vars, refusals) if v in unknown])
        self.ignored_vars = [v for v in arg_vars if v not in unknown]
        if _typical is None:
            self._typical = {**dict(zip(arg_vars, leaves)), **dict(zip(self._ctx_vars, ctx_leaves))}
        else:  # drawn only if a schedule asks for it
            program = self.program
            self._typical = lambda: _typical(program)
        self.schedule = self._build_schedule(free_vars(free, self._arg_names, self._leaf_names, arg_vars))
        self._out_avals = [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in self.program.outvars]
        self.trace_count = 0
        self._run = jax.jit(self.run_flat)
        self._pgf = jax.jit(self.pgf_flat)

    # -- building ------------------------------------------------------------------------
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
            weak_avals = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=is_weak(x))
                          for a, x in zip(self._avals, leaves)]
            if not any(a.weak_type for a in weak_avals):
                raise
            out_tree_box.clear()
            try:
                closed = jax.make_jaxpr(flat_f)(*weak_avals, *self._ctx_avals)
            except TypeError:
                raise strong_error from None
            self._avals = weak_avals
        self.closed_jaxpr = closed
        self._out_tree = out_tree_box[0]
        self._out_names = leaf_paths(self._out_tree)
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
        chosen = free_vars(free, self._arg_names, self._leaf_names, arg_vars)
        other = copy.copy(self)
        other.schedule = self._build_schedule(chosen)
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
        return check_context(context, self._context, self._ctx_tree, self._ctx_avals)

    def _check_y(self, y):
        return check_y(y, self._out_tree, self._out_avals, self._out_names, getattr(self.fun, "__name__", "f"))

    def _raw(self, y, theta, context):
        if self.ignored_vars:
            raise InputError("this inverse ignores some inputs (built for a conditioned model); use run_flat.")
        return self._run(self._check_context(context), self._check_y(y), check_theta(theta, self.schedule.theta))

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
        if concrete(ok) and not (bool(ok) and all_finite(xs)):
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
            why = diagnose(self.schedule, self._check_y(y), check_theta(theta, self.schedule.theta), fname,
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
