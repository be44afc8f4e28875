"""Checks on samples of conditioned models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from .errors import InputError
from .conditioning import ConditionedModel
from .conditioning.sites import _unwrap

__all__ = ["constraint_violation", "constraint_violations", "to_inference_data"]


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
    return float(jnp.max(constraint_violations(conditioned, samples, *args, params=params, **kwargs)))


def constraint_violations(conditioned: ConditionedModel, samples, *args, params=None, batch_ndims=1, **kwargs):
    """``|f(x) − y_obs|`` (largest over the exact observations) per sample, shaped like the batch.

    ``batch_ndims`` leading axes of ``samples`` are batch axes (2 for samples
    grouped by chain). See :func:`constraint_violation`.
    """
    plan = conditioned.plan(*args, **kwargs)
    ctx = plan.ctx_of(args, kwargs)
    if params is None:
        params = plan.read_params(args, kwargs)
    params = {n: params[n] for n in plan.params if n in params}
    y_obs = plan.observed_values(ctx, params=params)
    latents = {n: jnp.asarray(samples[n]) for n in plan.latents if n in samples}
    if not latents:
        raise InputError(f"samples hold none of the latent sites {plan.latents}.")

    def one(values):
        recomputed = recomputed_observations(conditioned, plan, values, args, kwargs, params)
        return jnp.max(jnp.stack([jnp.max(jnp.abs(jnp.asarray(v) - jnp.asarray(y))) for v, y in zip(recomputed, y_obs)]))

    for _ in range(batch_ndims):
        one = jax.vmap(one)
    return one(latents)


def recomputed_observations(conditioned: ConditionedModel, plan, latents, args, kwargs, params=None) -> list:
    """The exact observations as the *original* model computes them from one draw of ``latents``
    (in ``plan.exact`` order): the independent check that a draw satisfies the constraint."""
    model = handlers.condition(conditioned.model, plan.sample_data)
    model = handlers.substitute(model, data={**latents, **(params or {})})
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
    return [_unwrap(tr[n]["fn"]).v if tr[n]["type"] == "sample" else tr[n]["value"] for n in plan.exact]


def to_inference_data(mcmc, *, conditioned: ConditionedModel | None = None, exact_groups: bool = True, **kwargs):
    """``arviz.from_numpyro(mcmc)``, with what ppinv knows about the run added.

    On a run of a ppinv kernel (or given the ``conditioned`` model the samples
    came from), besides what ``from_numpyro`` gives:

    * ``observed_data`` also holds the **exact observations** (the values
      conditioned on). They have no ``log_likelihood`` entries: they are
      constraints every draw satisfies, not noisy data, so LOO and WAIC are
      about the model's noisy observations only.
    * ``constant_data`` holds the exact observations too, for tools that read
      fixed inputs there; its ``ppinv_exact_observations`` attribute names them.
    * ``sample_stats`` gains ``constraint_violation`` (per draw, the largest
      ``|f(x) − y_obs|`` of :func:`constraint_violations`: round-off for ppinv)
      and, with discrete θ, ``discrete_theta_moved`` (whether a draw's discrete θ
      — sign, root, branch — differs from the draw before).
    * a ``theta`` group holds the sampler's coordinates θ for each draw (the
      PGF of the draws), as :meth:`ppinv.ConditionedModel.theta_of` gives them.

    ``exact_groups=False`` gives plain ``from_numpyro``. Works on ArviZ 0.2x
    (``InferenceData``) and 1.x (``DataTree``); both index as ``idata["posterior"]``.

    Examples
    --------
    >>> # after mcmc.run(...):  idata = ppinv.diagnostics.to_inference_data(mcmc)
    >>> # idata["theta"], idata["sample_stats"]["constraint_violation"], idata["observed_data"]
    """
    try:
        from arviz import from_numpyro
    except ImportError:  # arviz >= 1 without the re-export
        from arviz_base import from_numpyro
    idata = from_numpyro(mcmc, **kwargs)
    if conditioned is None:
        conditioned = getattr(mcmc.sampler, "model", None)
    if not exact_groups or not isinstance(conditioned, ConditionedModel):
        return idata
    args, model_kwargs = tuple(getattr(mcmc, "_args", ())), dict(getattr(mcmc, "_kwargs", None) or {})
    plan = conditioned.plan(*args, **model_kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    exact = {n: np.asarray(v) for n, v in zip(plan.exact, plan.observed_values(plan.ctx_of(args, model_kwargs)))}
    _merge_group(idata, "observed_data", _dataset(exact, batch_dims=0))
    _merge_group(idata, "constant_data", _dataset(exact, batch_dims=0), ppinv_exact_observations=list(exact))
    stats = {"constraint_violation": np.asarray(
        constraint_violations(conditioned, samples, *args, batch_ndims=2, **model_kwargs))}
    theta = {n: np.asarray(v) for n, v in conditioned.theta_of(samples, *args, batch_ndims=2, **model_kwargs).items()}
    discrete = [plan.theta_sites[n] for n, spec in plan.schedule.theta.items() if spec.discrete]
    if discrete:
        moved = np.zeros(stats["constraint_violation"].shape, bool)
        for site in discrete:
            change = np.any((theta[site][:, 1:] != theta[site][:, :-1]).reshape(moved.shape[0], moved.shape[1] - 1, -1),
                            axis=-1)
            moved[:, 1:] |= change
        stats["discrete_theta_moved"] = moved
    _merge_group(idata, "sample_stats", _dataset(stats, batch_dims=2))
    if theta:
        _merge_group(idata, "theta", _dataset(theta, batch_dims=2))
    return idata


def _dataset(arrays: dict, batch_dims: int):
    """An xarray Dataset of ``arrays`` whose leading ``batch_dims`` axes are (chain, draw)."""
    import xarray as xr

    batch = ("chain", "draw")[:batch_dims]
    variables = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        event = tuple(f"{name}_dim_{k}" for k in range(value.ndim - batch_dims))
        variables[name] = (batch + event, value)
    coords = {}
    if batch_dims and arrays:
        first = np.asarray(next(iter(arrays.values())))
        coords = {d: np.arange(n) for d, n in zip(batch, first.shape)}
    return xr.Dataset(variables, coords=coords)


def _merge_group(idata, group: str, dataset, **attrs):
    """Add ``dataset``'s variables to ``group`` of ``idata`` (made if absent), on either ArviZ."""
    import xarray as xr

    has_group = group in (idata.groups() if hasattr(idata, "groups") and callable(idata.groups) else idata.children)
    if has_group:
        current = idata[group]
        current = current.to_dataset() if hasattr(current, "to_dataset") else current
        dataset = current.merge(dataset, compat="override")
    dataset.attrs.update(attrs)
    if hasattr(idata, "add_groups"):  # ArviZ 0.2x InferenceData
        if has_group:
            setattr(idata, group, dataset)
        else:
            idata.add_groups({group: dataset}, warn_on_custom_groups=False)
    else:  # ArviZ 1.x DataTree
        idata[group] = xr.DataTree(dataset)


# θ geometry after sampling (walls, folds, singular points; discrete θ stuck on a branch)
from .geometry import GeometryFeature, GeometryReport, StuckBranch, geometry_report, solve_margins  # noqa: E402

__all__ += ["GeometryFeature", "GeometryReport", "StuckBranch", "geometry_report", "solve_margins"]
