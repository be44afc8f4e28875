"""What users pass to an inverse, checked: argument names and supports, the context, ``y`` and θ.

Each check says what was wrong, where, and how to fix it (an :class:`~ppinv.errors.InputError`),
so that a mistake never surfaces as a bare traceback from inside JAX or as a silent NaN.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import keystr, tree_flatten, tree_flatten_with_path, tree_unflatten
from numpyro.distributions import constraints

from .errors import InputError

__all__ = ["support_refusal", "sign_support"]


def arg_names_of(f, n):
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


def normalize_support(support, arg_names):
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


def free_vars(free, arg_names, leaf_names, invars):
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


def leaf_refusals(example_args, arg_names, supports):
    """Leaf names, supports, and per leaf why it cannot be an unknown (or ``None``)."""
    names, leaf_supports, refusals = [], [], []
    for i, arg in enumerate(example_args):
        for path, leaf in tree_flatten_with_path(arg)[0]:
            name = arg_names[i] + (keystr(path) if path else "")
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


def raise_first(refusals):
    for reason in refusals:
        if reason is not None:
            raise InputError(reason)


def context_dict(context):
    """``context`` as a dict of array-like values (``{}`` for ``None``)."""
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


def check_context(context, built, built_tree, avals):
    """The context's leaves, checked against the one the inverse was ``built`` with (its default)."""
    if context is None:
        return tree_flatten(built)[0]
    leaves, tree = tree_flatten(context_dict(context))
    if tree != built_tree:
        raise InputError(
            f"context has structure {tree} but the inverse was built with {built_tree}; pass the same "
            "keys (build another inverse for other ones)."
        )
    out = []
    for (path, _), leaf, aval in zip(tree_flatten_with_path(built)[0], leaves, avals):
        leaf = jnp.asarray(leaf)
        if leaf.shape != aval.shape:
            raise InputError(f"context{keystr(path)} has shape {leaf.shape}; the inverse was built for {aval.shape}.")
        out.append(leaf.astype(aval.dtype))
    return out


def check_y(y, out_tree, out_avals, out_names, fname):
    """``y``'s leaves at ``f``'s output dtypes; a concrete NaN or infinity is refused by name."""
    leaves, tree = tree_flatten(y)
    if tree != out_tree:
        raise InputError(f"y has structure {tree} but f returns {out_tree}.")
    out = []
    for i, (leaf, aval) in enumerate(zip(leaves, out_avals)):
        # judged on the value as given: under jit, jnp.asarray of a constant is a tracer
        given = np.asarray(leaf) if concrete(leaf) else None
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
                f"y{out_names[i]} (output {i} of {fname}) is {np.array2string(given, threshold=8)}, which "
                "contains NaN or inf; an observation must be finite (a non-finite value has no preimage). "
                "Under jit such a y is outside the domain: in_domain is False and log_abs_det_jacobian -inf."
            )
        out.append(leaf.astype(aval.dtype))
    return out


def check_theta(theta, spec):
    """θ as a dict by leaf name at ``spec``'s shapes and dtypes."""
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
            raise InputError(f"theta['{name}'] has shape {val.shape}; expected {tuple(s.shape)} ({s.describe()}).")
        if s.discrete:
            if not (jnp.issubdtype(val.dtype, jnp.integer) or val.dtype == jnp.bool_):
                raise InputError(
                    f"theta['{name}'] is a discrete choice ({s.kind}) and needs an integer dtype; got {val.dtype}."
                )
        elif not jnp.issubdtype(val.dtype, jnp.floating):
            raise InputError(f"theta['{name}'] is continuous and needs a floating dtype; got {val.dtype}.")
        out[name] = val.astype(s.dtype)
    return out


def sign_support(value):
    """``positive`` / ``nonnegative`` for a concrete floating value whose entries all are, else ``None``."""
    x = np.asarray(value)
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return None
    if np.all(x > 0):
        return constraints.positive
    return constraints.nonnegative if np.all(x >= 0) else None


def aval_of(x):
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def is_weak(x):
    try:
        return bool(jnp.asarray(x).weak_type)
    except TypeError:  # an abstract example (a ShapeDtypeStruct) has no weak type
        return False


def concrete(x):
    return not isinstance(x, jax.core.Tracer)


def all_finite(xs):
    """No NaN or infinity in the concrete values: a non-finite x is never a preimage of a finite y.
    (Under ``grad`` the flag can be concrete while the values are traced: those are not judged.)"""
    return all(not concrete(x) or bool(np.all(np.isfinite(np.asarray(x)))) for x in xs)


def leaf_paths(tree):
    """``keystr`` of each leaf of a tree structure (``""`` for a single array)."""
    dummy = tree_unflatten(tree, list(range(tree.num_leaves)))
    return [keystr(path) for path, _ in tree_flatten_with_path(dummy)[0]]
