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
from numpyro.infer.util import constrain_fn, log_density, potential_energy

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
    """Latent values drawn from the model's prior, turned into θ by the PGF.

    Returns ``(values by site, (inverse ok, solved latents inside their supports))``;
    the flags let a failed initialisation say *why* no draw was valid.
    """
    model = handlers.condition(cm.model, data=plan.sample_data)
    tr = handlers.trace(handlers.seed(model, key)).get_trace(*args, **kwargs)
    latents = {n: tr[n]["value"] for n in plan.latents}
    ctx = plan.ctx_of(args, kwargs)
    theta = plan.pgf(ctx, latents)
    values = {plan.theta_sites[n]: theta[n] for n in theta}
    values.update({n: latents[n] for n in plan.untouched})
    x, _, ok = plan.invert(ctx, theta)
    in_support = jnp.asarray(True)
    for n, val in x.items():
        sup = plan.sites[n].support
        if sup is not None:  # NaN is a domain failure of the inverse, not a support violation
            inside = jnp.logical_or(jnp.all(sup.check(val)), jnp.any(jnp.isnan(val)))
            in_support = jnp.logical_and(in_support, inside)
    return values, (ok, in_support)


def pgf_initial_values(cm, rng_key, args=(), kwargs=None, num_tries=64, check=True):
    """A valid point of the conditioned model: draw ``x`` from the prior, ``θ = pgf(x)``.

    ``g(y_obs, θ)`` is then a point on the constraint set whenever ``(y_obs, θ)``
    is inside the domain; the first of ``num_tries`` prior draws that is valid
    is returned (constrained values by site name). With ``check=False`` no
    error is raised when none is valid (for use inside ``vmap`` over data sets).
    """
    kwargs = kwargs or {}
    plan = cm.plan(*args, **kwargs)
    if check and not is_concrete(rng_key):
        # Traced key (MCMC's chain_method="parallel" initialises inside pmap): the draws
        # below cannot be inspected, so check once with a concrete key that a valid point
        # exists at all, to fail here with the reason instead of running chains at −∞.
        with jax.ensure_compile_time_eval():
            pgf_initial_values(cm, jax.random.PRNGKey(0), args, kwargs, num_tries)

    def one(key):
        values, flags = _prior_point(cm, plan, key, args, kwargs)
        ld, _ = log_density(cm, args, kwargs, values)
        return values, ld, flags

    def tries(key):
        values, lds, flags = jax.vmap(one)(jax.random.split(key, num_tries))
        ok = jnp.isfinite(lds)
        idx = jnp.argmax(ok)
        return jax.tree_util.tree_map(lambda v: v[idx], values), ok, flags

    # one compiled evaluation of all tries (an eager run would compile every primitive)
    pick, ok, (inv_ok, in_support) = jax.jit(tries)(rng_key)
    if is_concrete(ok) and not bool(np.any(ok)):
        _raise_no_valid_start(plan, args, kwargs, num_tries, bool(jnp.any(inv_ok)), bool(jnp.any(in_support)))
    return pick


def _fmt(v):
    v = np.asarray(v)
    return repr(v.item()) if v.ndim == 0 else np.array2string(v, threshold=8)


def _raise_no_valid_start(plan, args, kwargs, num_tries, some_inverse_ok, some_in_support):
    y = plan.observed_values(plan.ctx_of(args, kwargs))
    obs = ", ".join(f"'{n}' = {_fmt(v)}" for n, v in zip(plan.exact, y))
    sites = ", ".join(repr(n) for n in plan.exact)
    lat = ", ".join(repr(n) for n in plan.upstream)
    if not some_in_support:
        why = (
            f"the observed value ({obs}) is outside the range of {sites} given the supports of the latents "
            f"({lat}): solving for them puts a latent outside its support at every one of {num_tries} prior "
            "draws (e.g. a sum of positive latents observed at a negative value)"
        )
    elif not some_inverse_ok:
        why = (
            f"the observed value ({obs}) is outside the range of the map from the latents ({lat}) to {sites}: "
            f"the inverse is undefined there for every one of {num_tries} prior draws (e.g. exp(a) observed "
            "at a negative value, a*a at a negative value, sin(a) outside [-1, 1])"
        )
    else:
        why = (
            f"at the observation ({obs}), every one of {num_tries} prior draws mapped through the inverse has "
            "zero density under the model (the observed value may be outside the range of what the prior "
            "allows, or the observations contradict each other)"
        )
    raise ConditionError(
        f"no valid starting point: {why}. Check the observed value(s) in the data; if they are right and "
        "valid points are merely rare, raise init_tries or pass init_params."
    )


class Target:
    """Potential, transforms and post-processing of a conditioned model.

    Built once from example arguments; every method also takes the model
    arguments explicitly, so one compiled kernel serves new data of the same
    shapes (``MCMC(jit_model_args=True)``, or a vmap over data sets).
    Nothing here runs the model eagerly: site supports are read off an
    abstract trace, and the potential is NumPyro's ``potential_energy``.
    """

    def __init__(self, cm: ConditionedModel, args, kwargs, init_values):
        self.cm = cm
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        plan = cm.plan(*self.args, **self.kwargs)
        self.plan = plan
        spec = plan.schedule.theta
        self.discrete_sites = [plan.theta_sites[n] for n, s in spec.items() if s.discrete]
        self.discrete_support = {plan.theta_sites[n]: s.support for n, s in spec.items() if s.discrete}
        self.discrete_dtype = {plan.theta_sites[n]: s.dtype for n, s in spec.items() if s.discrete}
        self.theta_refs = {plan.theta_sites[n]: s.reference() for n, s in spec.items()}
        self._model = partial(_with_discrete, cm)
        disc0 = {k: init_values[k] for k in self.discrete_sites}
        self.transforms = self._continuous_transforms(disc0, init_values)
        self.continuous_sites = list(self.transforms)

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

        def fn(z_all):
            disc = {k: z_all[k] for k in self.discrete_sites}
            z = {k: z_all[k] for k in self.continuous_sites}
            out = constrain_fn(self._model, (disc,) + args, kwargs, z, return_deterministic=True)
            out.update(disc)
            return out

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
