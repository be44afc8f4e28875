"""A conditioned model's scalar θ narrowed to their feasible sets, for the data they were found at.

The plan is built with the observations, arguments and params it first meets; for those
values :func:`ppinv.geometry.feasible.feasible_theta` may certify where θ's inverse is in its
domain and narrow θ's support to exactly that set (:mod:`ppinv.geometry.feasible`). The set
depends on the values, and a plan's context is read again at every call (other observations
through ``handlers.condition``, other arguments, params moved by SVI): the narrowed plan
runs only where the context and the observations are concrete and equal to the values it
was found at. Everywhere else the plan as it was before (``wide``) runs, whose θ covers every
value: no call ever samples a support that cuts away mass.
"""

from __future__ import annotations

import copy

import numpy as np
from jax.tree_util import tree_flatten

from .._compat import is_concrete
from ..errors import ConditionError
from ..geometry.feasible import feasible_theta
from .sites import _is_array


def _concrete_values(values):
    if not all(is_concrete(v) for v in values):
        return None
    return [np.asarray(v) for v in values]


def _same(values, reference):
    return values is not None and len(values) == len(reference) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(values, reference))


class FeasiblePlan:
    """The part of a :class:`~ppinv.conditioning.plan.Plan` that narrows θ to its feasible set."""

    wide = None  # the plan before narrowing (None: nothing was narrowed)
    feasible = None  # {θ name: (a, b, periodic)} when narrowed
    _feasible_at = None  # the values it was found at (:meth:`_values_of`)

    def _values_of(self, arg_leaves, params, data):
        """The values the feasible set depends on, as given (not converted: a conversion under
        ``jit`` would be traced): array arguments, params, observed data; ``None`` if any is traced.
        Delta observations the model computes are functions of these."""
        data = self.cm.data if data is None else data
        observed = [n for n in self.exact if self.sites[n].from_data] + list(self.data_names)
        return _concrete_values(list(arg_leaves) + [params[n] for n in self.params] + [data[n] for n in observed])

    def narrow_to_feasible(self, arg_ctx):
        """Narrow θ where :func:`feasible_theta` certifies its feasible set at the build values."""
        try:
            params = self.read_params(*self.rebuild_args(arg_ctx))
            full = self._full_ctx(arg_ctx, None, params)
            y = self._observed(full)
        except ConditionError:  # params only the handlers of a later call give
            return
        values = self._values_of(arg_ctx, params, None)
        if values is None or _concrete_values(list(full) + list(y)) is None:
            return
        inverse, found = feasible_theta(self.inverse, full, y)
        if found is None:
            return
        self.wide = copy.copy(self)
        self.inverse, self.feasible, self._feasible_at = inverse, found, values
        self._support_unsure = None
        self.theta_sites = self._name_theta_sites(dict(zip(self.program.invars, self.latents)))

    def _narrowed_here(self, args, kwargs, data):
        leaves = [leaf for leaf in tree_flatten((args, kwargs))[0] if _is_array(leaf)]
        return _same(self._values_of(leaves, self.read_params(args, kwargs), data), self._feasible_at)

    def run(self, args, kwargs, data=None):
        if self.wide is not None and not self._narrowed_here(args, kwargs, data):
            return self.wide.run(args, kwargs, data)
        return super().run(args, kwargs, data)
