"""The sites of a model as ``condition`` sees them, and the checks of data against them."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.tree_util import tree_flatten
from numpyro.distributions import constraints

from .._compat import is_concrete
from ..errors import ConditionError


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


def _input_support(site):
    """Support of a latent as an input of the inverted map (see ``_SiteInfo.from_input``)."""
    if site.simplex:
        # each retained entry of a simplex lies in (0, 1); the sum condition is checked
        # when the model is replayed with the whole simplex
        return constraints.independent(constraints.unit_interval, 1)
    return site.support


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
