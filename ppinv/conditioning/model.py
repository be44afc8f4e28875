"""``ppinv.condition``: exact conditioning of NumPyro models on deterministic observations.

NumPyro's ``condition`` silently ignores ``deterministic`` sites, and a
``Delta`` likelihood is −∞ almost everywhere. :func:`condition` instead
inverts the map from the latent sites to the observed values and returns an
ordinary NumPyro model over the parameters θ of that inverse, written as one
would write it by hand:

* its sample sites are the θ sites, the latents that no exact observation
  depends on, and the model's own ordinary (noisy) observations. A θ that is
  a whole latent keeps the latent's name (observing ``y = a·b``, ``a`` is
  sampled and ``b`` solved); the other θ (null-space coordinates, signs,
  roots, periods, ...) are named ``theta_<name>``;
* the θ sites carry θ's density themselves: the first holds the exact
  conditional ``log p_X(x) + log|det ∂x/∂(y, θ)|`` (its
  :class:`ConditionalDensity`), the others zero. No observed site is added, so
  ``log_likelihood``, ``az.loo``/``az.waic`` and ``get_model_relations`` see the
  model's own noisy observations as its likelihood, and nothing else;
* the solved latents come back as ``deterministic`` sites under their own
  names. The exact observations are constraints, not likelihood terms: they
  are data (``cm.data``), not sites of the conditioned model. Only where they
  leave no θ at all (they determine the latents) is their joint density
  ``p(y | other latents)`` a likelihood; the first exact site is then an
  observed site carrying it.

The model's ``numpyro.param`` sites, its model arguments and the data are
inputs of the inverse, read at every call: after SVI (or
``handlers.substitute``) moves a param, the constraint solved is the one with
the new value.

Because the result is a plain NumPyro model, NUTS, HMC, DiscreteHMCGibbs, SVI
and Predictive all work on it; :mod:`ppinv.infer` adds kernels that start
from valid points and move between branches. NumPyro's handlers compose with
it: ``handlers.condition`` on a latent conditions that latent (the inverse is
rebuilt with it as data), and ``handlers.substitute`` with values of every
solved latent (``Predictive`` given the samples of ppinv's kernels, which hold
the model's sites only) sets θ from the PGF.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import ConditionError
from ..rules import current_table
from .outside import _conditioned_from_outside, _outside_handlers
from .plan import Plan
from .sites import _aval, _check_finite, _known, _signature, _takes_no_arguments

THETA_PREFIX = "theta_"


def condition(model, data=None, *, free=None, theta_prefix: str = THETA_PREFIX, choose_theta: bool = True):
    """Condition ``model`` exactly on ``data``.

    Parameters
    ----------
    model:
        A NumPyro model (a callable with ``numpyro.sample``/``deterministic``
        sites), or a model already conditioned by :func:`condition` (the data
        are then merged: ``condition(condition(m, a), b)`` is
        ``condition(m, {**a, **b})``; a name in both is an error).
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
        Prefix of the names of θ sites that are not latents of the model.
    choose_theta:
        Choose θ by geometry (``ppinv.theta_choice``): among a few schedules, the one whose
        solves map the most prior draws to valid points at the data (the fewest walls a
        sampler meets). ``False`` keeps the scheduler's own order of preferences.

    Returns
    -------
    ConditionedModel
        A NumPyro model taking the original model's arguments. A model that
        takes no arguments is traced and checked here (wrong names, shapes,
        data outside a site's support, observations that cannot be inverted
        are errors now); one with arguments is checked by ``cm.plan(*args)`` or
        its first call.

    Notes
    -----
    Many data sets (simulation-based calibration, a sweep over observations): pass the
    observation as a model argument to a ``Delta`` site, ``numpyro.sample("y",
    dist.Delta(f(x)), obs=y_obs)``, condition once with ``condition(model)``, and reuse
    one ``MCMC(..., jit_model_args=True)``: the inverse reads the observation as an
    input, so ``mcmc.run(key, y_new)`` with new data of the same shapes compiles
    nothing. A new ``condition(model, {"y": y_new})`` per data set is a new model, and
    its kernel compiles again.

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
    data = {} if data is None else data
    if isinstance(model, ConditionedModel):
        return model.merged(data, free=free, theta_prefix=theta_prefix, choose_theta=choose_theta)
    return ConditionedModel(model, data, theta_prefix=theta_prefix, free=free, choose_theta=choose_theta)


class ConditionedModel:
    """A NumPyro model conditioned exactly by :func:`condition`.

    Call it like the original model. ``plan(*args, **kwargs)`` exposes the
    inverse used for those arguments (sites, θ, schedule); ``theta_of(samples)``
    gives the θ of samples of the model's latents.
    """

    def __init__(self, model, data, theta_prefix=THETA_PREFIX, free=None, *, choose_theta=True, _check_now=True):
        if not callable(model):
            raise ConditionError(f"model must be callable; got {type(model).__name__}.")
        if not isinstance(data, dict):
            raise ConditionError(f"data must be a dict of site name -> value; got {type(data).__name__}.")
        self.model = model
        self.data = dict(data)
        self.theta_prefix = theta_prefix
        self.free = [free] if isinstance(free, str) else list(free or [])
        self.choose_theta = choose_theta
        self.table = current_table()
        self._plans = {}
        self._with_outside = {}
        for name, value in self.data.items():
            _check_finite(name, value)
        self.__name__ = f"conditioned_{getattr(model, '__name__', 'model')}"
        if _check_now and _takes_no_arguments(model):
            self.plan()  # trace and schedule now, so wrong data fails here rather than at mcmc.run

    def merged(self, data, free=None, theta_prefix=THETA_PREFIX, choose_theta=True):
        """This model's data and ``data`` together (``condition(condition(m, a), b)``)."""
        if not isinstance(data, dict):
            raise ConditionError(f"data must be a dict of site name -> value; got {type(data).__name__}.")
        twice = sorted(set(data) & set(self.data))
        if twice:
            raise ConditionError(
                f"data names {twice} are already conditioned on by the inner ppinv.condition; a site is observed "
                "once. Drop them from one of the two data dicts."
            )
        free = [free] if isinstance(free, str) else list(free or [])
        prefix = theta_prefix if theta_prefix != THETA_PREFIX else self.theta_prefix
        return ConditionedModel(self.model, {**self.data, **data}, theta_prefix=prefix, free=self.free + free,
                                choose_theta=self.choose_theta and choose_theta)

    def plan(self, *args, **kwargs) -> Plan:
        key = _signature(args, kwargs)
        plan = self._plans.get(key)
        if plan is None:
            # The plan traces the model with its own handlers; the handlers of whoever
            # called us (MCMC's trace, Predictive's substitute, SVI's guide set-up...)
            # must not see those private runs, or they record every site twice.
            with _outside_handlers():
                plan = Plan(self, args, kwargs)
            self._plans[key] = plan
        return plan

    def __call__(self, *args, **kwargs):
        plan = self.plan(*args, **kwargs)
        given = _conditioned_from_outside(set(plan.upstream) | set(plan.exact))
        if not given:
            return plan.run(args, kwargs)
        data = {**self.data, **given}
        if set(given) <= set(self.data):  # new values of exact observations: the same inverse
            return plan.run(args, kwargs, data)
        return self._conditioned_on(given).plan(*args, **kwargs).run(args, kwargs, data)

    def _conditioned_on(self, given):
        """This model with latents that ``handlers.condition`` observes from outside added to its data.

        One per set of names and shapes; the values themselves are read at every call.
        """
        key = tuple(sorted((n, tuple(_aval(v).shape), str(_aval(v).dtype)) for n, v in given.items()))
        cm = self._with_outside.get(key)
        if cm is None:
            data = {**self.data, **{n: (v if _known(v) else _aval(v)) for n, v in given.items()}}
            free = [f for f in self.free if f not in given]
            cm = ConditionedModel(self.model, data, theta_prefix=self.theta_prefix, free=free,
                                  choose_theta=self.choose_theta, _check_now=False)
            self._with_outside[key] = cm
        return cm

    def theta_of(self, samples, *args, batch_ndims=1, **kwargs):
        """θ sites (by site name) reproducing samples of the model's latents (the PGF, batched).

        ppinv's kernels return the model's own sites; this gives the sampler's
        coordinates when they are wanted (to check their mixing, say).
        """
        plan = self.plan(*args, **kwargs)
        ctx = plan.full_ctx_of(args, kwargs)
        one = lambda lat: {plan.theta_sites[n]: v for n, v in plan._pgf(ctx, lat).items()}  # noqa: E731
        for _ in range(batch_ndims):
            one = jax.vmap(one)
        return one({n: jnp.asarray(samples[n]) for n in plan.upstream})

    def __repr__(self):
        return f"<ppinv.ConditionedModel of {getattr(self.model, '__name__', 'model')} on {sorted(self.data)}>"
