"""Model arguments split into data (traced by ``jit``) and structure (part of the cache key).

ppinv's kernels compile their start-up and post-processing once per argument
*signature*, so that new data of the same shapes reuse the compiled programs.
The split follows :func:`ppinv.condition`'s plans: arrays and Python floats are
data; ints, bools, strings and other objects are structure (they may fix
shapes or which sites exist).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import tree_flatten, tree_unflatten

from .._compat import is_concrete

__all__ = ["ModelArgs"]


def _is_data(x) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) or not is_concrete(x)


def _static_key(x):
    try:
        hash(x)
        return ("static", type(x).__name__, x)
    except TypeError:
        return ("object", id(x))


class ModelArgs:
    """``(args, kwargs)`` as a hashable ``signature`` plus the list of ``dynamic`` data leaves."""

    def __init__(self, args=(), kwargs=None):
        leaves, self.tree = tree_flatten((tuple(args), dict(kwargs or {})))
        self.is_data = tuple(_is_data(leaf) for leaf in leaves)
        self.static = tuple(None if d else leaf for d, leaf in zip(self.is_data, leaves))
        self.dynamic = [jnp.asarray(leaf) for leaf, d in zip(leaves, self.is_data) if d]
        avals = tuple((tuple(jnp.shape(v)), str(jnp.result_type(v))) for v in self.dynamic)
        statics = tuple(_static_key(s) for s, d in zip(self.static, self.is_data) if not d)
        self.signature = (self.tree, self.is_data, statics, avals)

    def rebuild(self, dynamic):
        """``(args, kwargs)`` with the data leaves replaced by ``dynamic`` (e.g. tracers)."""
        it = iter(dynamic)
        leaves = [next(it) if d else s for d, s in zip(self.is_data, self.static)]
        args, kwargs = tree_unflatten(self.tree, leaves)
        return tuple(args), kwargs
