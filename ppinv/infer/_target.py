"""The sampling target shared by ppinv's kernels.

A conditioned model has continuous sites (continuous θ and untouched latents,
sampled in unconstrained space) and discrete sites (discrete θ: signs, roots,
periods, branches). :class:`Target` gives the potential energy as a function
of both, the transforms and the post-processing MCMC needs (starting points
are made in :mod:`ppinv.infer._start`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import constrain_fn, potential_energy

from .._compat import is_concrete
from ..errors import ConditionError
from ..conditioning import ConditionedModel

__all__ = ["Target", "FlatLayout", "as_conditioned", "discrete_neighbours"]


def _wrapped_conditioned(model):
    """The ConditionedModel inside NumPyro handlers wrapping it (``handlers.condition(cm, ...)``), if any."""
    while hasattr(model, "fn") and not isinstance(model, ConditionedModel):
        model = model.fn
    return model if isinstance(model, ConditionedModel) else None


def as_conditioned(model, kernel_name):
    inner = None if isinstance(model, ConditionedModel) else _wrapped_conditioned(model)
    if inner is not None:
        raise ConditionError(
            f"{kernel_name} got NumPyro handlers ({type(model).__name__}) around {inner!r}; its kernels sample the "
            "conditioned model itself. For new values of the exact observations, make them a model argument "
            "(numpyro.sample('y', dist.Delta(f(x)), obs=y_obs)), condition once with ppinv.condition(model) and "
            "pass y_obs to mcmc.run (with jit_model_args=True nothing compiles again); or condition anew: "
            "ppinv.condition(model, {'y': value})."
        )
    if not isinstance(model, ConditionedModel):
        raise ConditionError(
            f"{kernel_name} samples models built by ppinv.condition(model, data); got "
            f"{getattr(model, '__name__', type(model).__name__)}. Wrap it: "
            f"{kernel_name}(ppinv.condition(model, {{'site': value}}))."
        )
    return model


def _with_discrete(cm, discrete, *args, **kwargs):
    """The conditioned model with its discrete θ sites held at ``discrete``."""
    with handlers.condition(data=discrete):
        return cm(*args, **kwargs)


class FlatLayout:
    """Unconstrained values of several sites as one vector, sites in sorted name order.

    The order is the one NumPyro ravels a dict of sites in (``ravel_pytree``), so a
    mass matrix over the vector is the one NumPyro keeps for the block of all sites.
    Samplers carry the vector instead of a dict: a model of N scalar sites then
    compiles to a loop carrying a few arrays rather than N leaves per copy of the
    state (XLA's compile time grows faster than linearly in the leaves a loop carries).
    """

    def __init__(self, shapes, dtype):
        self.names = tuple(sorted(shapes))
        self.shapes = {k: tuple(shapes[k]) for k in self.names}
        self.dtype = dtype
        self.sizes = [int(np.prod(self.shapes[k], dtype=np.int64)) for k in self.names]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()
        self.size = self.offsets[-1]

    def ravel(self, z):
        if not self.names:
            return jnp.zeros((0,), self.dtype)
        return jnp.concatenate([jnp.ravel(jnp.asarray(z[k], self.dtype)) for k in self.names])

    def unravel(self, flat):
        return {
            k: jnp.reshape(flat[a:b], self.shapes[k])
            for k, a, b in zip(self.names, self.offsets[:-1], self.offsets[1:])
        }


class Target:
    """Potential, transforms and post-processing of a conditioned model.

    Built once from example arguments; every method also takes the model
    arguments explicitly, so one compiled kernel serves new data of the same
    shapes (``MCMC(jit_model_args=True)``, or a vmap over data sets).
    Nothing here runs the model eagerly: site supports are read off an
    abstract trace, and the potential is NumPyro's ``potential_energy``.
    """

    def __init__(self, cm: ConditionedModel, args, kwargs, init_values):
        # init_values: a start by site name, concrete or abstract (jax.ShapeDtypeStruct):
        # only its structure, shapes and dtypes are read
        self.cm = cm
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        plan = cm.plan(*self.args, **self.kwargs)
        self.plan = plan
        spec = plan.schedule.theta
        self.discrete_sites = [plan.theta_sites[n] for n, s in spec.items() if s.discrete]
        self.discrete_support = {plan.theta_sites[n]: s.support for n, s in spec.items() if s.discrete}
        self.discrete_dtype = {plan.theta_sites[n]: s.dtype for n, s in spec.items() if s.discrete}
        self._model = partial(_with_discrete, cm)
        disc0 = {k: init_values[k] for k in self.discrete_sites}
        self.transforms = self._continuous_transforms(disc0, init_values)
        self.continuous_sites = list(self.transforms)
        self.layout = self._flat_layout(init_values)

    @property
    def theta_refs(self):
        """θ site -> its reference distribution (built where used, so inside the traced step)."""
        spec = self.plan.schedule.theta
        return {self.plan.theta_sites[n]: s.reference() for n, s in spec.items()}

    def _continuous_transforms(self, disc0, values):
        supports = {}

        def probe(disc, values):
            model = handlers.substitute(handlers.seed(self._model, 0), data=values)
            tr = handlers.trace(model).get_trace(disc, *self.args, **self.kwargs)
            for name, site in tr.items():
                if site["type"] == "sample" and not site["is_observed"]:
                    supports[name] = site["fn"].support
            return 0.0

        jax.make_jaxpr(probe)(disc0, values)
        # θ sites: their supports are the plan's (the traced reference distribution
        # would rebuild them from traced arithmetic)
        for n, spec in self.plan.schedule.theta.items():
            site = self.plan.theta_sites[n]
            if site in supports:
                supports[site] = spec.support
        leaked = [n for n, sup in supports.items() if any(not is_concrete(x) for x in jax.tree_util.tree_leaves(sup))]
        if leaked:
            raise ConditionError(
                f"the supports of the latent sites {leaked} depend on other sites or on traced arguments; "
                "ppinv's kernels need static supports for the sites they sample."
            )
        return {name: biject_to(sup) for name, sup in supports.items()}

    def _flat_layout(self, values):
        unconstrained = jax.eval_shape(self.unconstrain, {k: values[k] for k in self.continuous_sites})
        dtypes = [v.dtype for v in unconstrained.values()]
        dtype = jnp.result_type(*dtypes) if dtypes else jnp.zeros(()).dtype
        return FlatLayout({k: v.shape for k, v in unconstrained.items()}, dtype)

    def _a(self, args, kwargs):
        return (self.args if args is None else tuple(args)), (self.kwargs if kwargs is None else kwargs)

    # -- values ----------------------------------------------------------------------------
    def unconstrain(self, values):
        return {k: self.transforms[k].inv(values[k]) for k in self.continuous_sites}

    def constrain(self, z):
        return {k: self.transforms[k](z[k]) for k in self.continuous_sites}

    def potential(self, z, disc, args=None, kwargs=None):
        """Potential energy at unconstrained continuous ``z`` and discrete ``disc``."""
        args, kwargs = self._a(args, kwargs)
        return potential_energy(self._model, (disc,) + args, kwargs, z)

    def potential_fn(self, disc, args=None, kwargs=None):
        return partial(self.potential, disc=disc, args=args, kwargs=kwargs)

    def postprocess_fn(self, args=None, kwargs=None):
        args, kwargs = self._a(args, kwargs)
        # the model's own sites only: θ that are not latents of the model are the sampler's
        # coordinates, given on request by cm.theta_of(samples)
        hidden = set(self.plan.extra_theta_sites)

        def fn(z_all):
            disc = {k: z_all[k] for k in self.discrete_sites}
            z = {k: z_all[k] for k in self.continuous_sites}
            out = constrain_fn(self._model, (disc,) + args, kwargs, z, return_deterministic=True)
            return {k: v for k, v in out.items() if k not in hidden}

        return fn

    def postprocess(self, z_all):
        return self.postprocess_fn()(z_all)


def discrete_neighbours(support):
    """``(kind, K)``: ``("enumerate", K)`` for small integer intervals, else ``("walk", None)``."""
    if isinstance(support, constraints.integer_interval):
        k = int(support.upper_bound) - int(support.lower_bound) + 1
        if k <= 16:
            return "enumerate", k
    return "walk", None
