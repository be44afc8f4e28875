"""The sampling target shared by ppinv's kernels.

A conditioned model has continuous sites (continuous θ and untouched latents,
sampled in unconstrained space) and discrete sites (discrete θ: signs, roots,
periods, branches). :class:`Target` gives the potential energy as a function
of both, the transforms, initial values from the PGF, and the post-processing
MCMC needs.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import initialize_model, log_density

from .._compat import is_concrete
from ..errors import ConditionError
from ..handlers import ConditionedModel

__all__ = ["Target", "pgf_initial_values", "as_conditioned"]


def as_conditioned(model, kernel_name):
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


def _prior_point(cm, plan, key, args, kwargs):
    """Latent values drawn from the model's prior, turned into θ by the PGF."""
    model = handlers.condition(cm.model, data=plan.sample_data)
    tr = handlers.trace(handlers.seed(model, key)).get_trace(*args, **kwargs)
    latents = {n: tr[n]["value"] for n in plan.latents}
    ctx = plan.ctx_of(args, kwargs)
    theta = plan.pgf(ctx, latents)
    values = {plan.theta_sites[n]: theta[n] for n in theta}
    values.update({n: latents[n] for n in plan.untouched})
    return values


def pgf_initial_values(cm, rng_key, args=(), kwargs=None, num_tries=16):
    """A valid point of the conditioned model: draw ``x`` from the prior, ``θ = pgf(x)``.

    ``g(y_obs, θ)`` is then a point on the constraint set whenever ``(y_obs, θ)``
    is inside the domain; the first of ``num_tries`` prior draws that is valid
    is returned (constrained values by site name).
    """
    kwargs = kwargs or {}
    plan = cm.plan(*args, **kwargs)

    def one(key):
        values = _prior_point(cm, plan, key, args, kwargs)
        ld, _ = log_density(cm, args, kwargs, values)
        return values, ld

    keys = jax.random.split(rng_key, num_tries)
    values, lds = jax.vmap(one)(keys)
    ok = jnp.isfinite(lds)
    idx = jnp.argmax(ok)
    pick = jax.tree_util.tree_map(lambda v: v[idx], values)
    if is_concrete(ok) and not bool(jnp.any(ok)):
        obs = ", ".join(f"{n}={np.asarray(v)!r}" for n, v in zip(plan.exact, plan.observed_values(plan.ctx_of(args, kwargs))))
        raise ConditionError(
            f"no valid starting point: none of {num_tries} prior draws, mapped through the inverse, gives "
            f"a finite density at the observation ({obs}). The observed value is most likely outside the "
            "range of the observed site(s) (e.g. exp(a) observed at a negative value, a*a at a negative "
            "value), or the observations contradict each other. Check the data, or pass init_params."
        )
    return pick


class Target:
    """Potential, transforms and post-processing of a conditioned model for given arguments."""

    def __init__(self, cm: ConditionedModel, rng_key, args, kwargs, init_values):
        self.cm = cm
        self.args = args
        self.kwargs = kwargs
        plan = cm.plan(*args, **kwargs)
        self.plan = plan
        spec = plan.schedule.theta
        self.discrete_sites = [plan.theta_sites[n] for n, s in spec.items() if s.discrete]
        self.discrete_support = {plan.theta_sites[n]: s.support for n, s in spec.items() if s.discrete}
        self.discrete_dtype = {plan.theta_sites[n]: s.dtype for n, s in spec.items() if s.discrete}
        self.theta_refs = {plan.theta_sites[n]: s.reference() for n, s in spec.items()}
        disc0 = {k: init_values[k] for k in self.discrete_sites}
        cont0 = {k: v for k, v in init_values.items() if k not in disc0}
        wrapped = partial(_with_discrete, cm)
        info = initialize_model(
            rng_key,
            wrapped,
            init_strategy=init_to_value(values=cont0),
            dynamic_args=True,
            model_args=(disc0,) + tuple(args),
            model_kwargs=kwargs,
        )
        self._pe_gen = info.potential_fn
        self._pp_gen = info.postprocess_fn
        self.transforms = {
            name: biject_to(site["fn"].support)
            for name, site in info.model_trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        self.continuous_sites = list(self.transforms)

    # -- values ----------------------------------------------------------------------------
    def unconstrain(self, values):
        return {k: self.transforms[k].inv(values[k]) for k in self.continuous_sites}

    def constrain(self, z):
        return {k: self.transforms[k](z[k]) for k in self.continuous_sites}

    def potential(self, z, disc):
        """Potential energy at unconstrained continuous ``z`` and discrete ``disc``."""
        return self._pe_gen(disc, *self.args, **self.kwargs)(z)

    def potential_fn(self, disc):
        return self._pe_gen(disc, *self.args, **self.kwargs)

    def postprocess(self, z_all):
        disc = {k: z_all[k] for k in self.discrete_sites}
        z = {k: z_all[k] for k in self.continuous_sites}
        out = self._pp_gen(disc, *self.args, **self.kwargs)(z)
        out.update(disc)
        return out


def discrete_neighbours(support):
    """``(kind, K)``: ``("enumerate", K)`` for small integer intervals, else ``("walk", None)``."""
    if isinstance(support, constraints.integer_interval):
        k = int(support.upper_bound) - int(support.lower_bound) + 1
        if k <= 16:
            return "enumerate", k
    return "walk", None
