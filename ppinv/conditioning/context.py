"""The known inputs of a conditioned model's inverse: the array leaves of the model arguments,
the values of its ``numpyro.param`` sites (as the handlers around give them) and the data of its
sample sites conditioned as NumPyro does."""

from __future__ import annotations

import jax.numpy as jnp
from jax.tree_util import tree_flatten, tree_unflatten
from numpyro import handlers

from ..errors import ConditionError
from .sites import _is_array, _placeholder


class PlanContext:
    """The context half of a :class:`~ppinv.conditioning.plan.Plan`."""

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
