"""A conditioned model's scalar θ narrowed to its feasible set, for the data it was found at.

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

from .._compat import is_concrete
from ..errors import ConditionError
from ..geometry.feasible import feasible_theta


def _concrete_values(values):
    if not all(is_concrete(v) for v in values):
        return None
    return [np.asarray(v) for v in values]


def _same(values, reference):
    got = _concrete_values(values)
    return got is not None and len(got) == len(reference) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, reference))


class FeasiblePlan:
    """The part of a :class:`~ppinv.conditioning.plan.Plan` that narrows θ to its feasible set."""

    wide = None  # the plan before narrowing (None: nothing was narrowed)
    feasible = None  # (θ name, a, b, periodic) when narrowed
    _feasible_at = None  # the full context and observations it was found at

    def narrow_to_feasible(self, arg_ctx):
        """Narrow θ where :func:`feasible_theta` certifies its feasible set at the build values."""
        try:
            full = self._full_ctx(arg_ctx)
            y = self._observed(full)
        except ConditionError:  # params only the handlers of a later call give
            return
        values = _concrete_values(list(full) + list(y))
        if values is None:
            return
        inverse, found = feasible_theta(self.inverse, full, y)
        if found is None:
            return
        self.wide = copy.copy(self)
        self.inverse, self.feasible, self._feasible_at = inverse, found, values
        self._support_unsure = None
        self.theta_sites = self._name_theta_sites(dict(zip(self.program.invars, self.latents)))

    def _narrowed_here(self, args, kwargs, data):
        full = self._full_ctx(self.ctx_of(args, kwargs), data, self.read_params(args, kwargs))
        return _same(list(full) + list(self._observed(full, data)), self._feasible_at)

    def run(self, args, kwargs, data=None):
        if self.wide is not None and not self._narrowed_here(args, kwargs, data):
            return self.wide.run(args, kwargs, data)
        return super().run(args, kwargs, data)
