"""Checks on samples of conditioned models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro import handlers

from .handlers import ConditionedModel, _unwrap

__all__ = ["constraint_violation", "to_inference_data"]


def constraint_violation(conditioned: ConditionedModel, samples, *args, params=None, **kwargs):
    """Largest ``|f(x) − y_obs|`` over samples, recomputing each exact observation.

    The original model is re-run with every latent site set to its sampled
    value, so the figure measures how exactly the samples satisfy the
    constraint (ppinv: round-off; a soft constraint: its width). The model's
    ``numpyro.param`` sites take the values in ``params`` (e.g.
    ``svi.get_params(state)``), else those the enclosing handlers give, else
    their initial values: pass the params the samples were drawn with.

    Examples
    --------
    >>> # after mcmc.run(...):  ppinv.diagnostics.constraint_violation(conditioned, mcmc.get_samples())
    """
    plan = conditioned.plan(*args, **kwargs)
    ctx = plan.ctx_of(args, kwargs)
    if params is None:
        params = plan.read_params(args, kwargs)
    params = {n: params[n] for n in plan.params if n in params}
    y_obs = plan.observed_values(ctx, params=params)
    latents = {n: jnp.asarray(samples[n]) for n in plan.latents if n in samples}
    if not latents:
        raise ValueError(f"samples hold none of the latent sites {plan.latents}.")

    def one(values):
        model = handlers.condition(conditioned.model, plan.sample_data)
        model = handlers.substitute(model, data={**values, **params})
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        errs = []
        for name, y in zip(plan.exact, y_obs):
            site = tr[name]
            val = _unwrap(site["fn"]).v if site["type"] == "sample" else site["value"]
            errs.append(jnp.max(jnp.abs(jnp.asarray(val) - jnp.asarray(y))))
        return jnp.max(jnp.stack(errs))

    return float(jnp.max(jax.vmap(one)(latents)))


def to_inference_data(mcmc, **kwargs):
    """``arviz.from_numpyro(mcmc)`` on any supported ArviZ (0.2x: ``InferenceData``; 1.x: ``DataTree``).

    ArviZ 1.x moved the converters to ``arviz_base``; both results index as
    ``idata["posterior"]``.

    Examples
    --------
    >>> # after mcmc.run(...):  ppinv.diagnostics.to_inference_data(mcmc)["posterior"]
    """
    try:
        from arviz import from_numpyro
    except ImportError:  # arviz >= 1 without the re-export
        from arviz_base import from_numpyro
    return from_numpyro(mcmc, **kwargs)
