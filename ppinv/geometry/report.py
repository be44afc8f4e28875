"""The entry point: :func:`geometry_report` after sampling, the concentrated features first and a
warning per stuck discrete θ."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError
from .divergences import _feature
from .findings import GeometryReport
from .margins import solve_margins
from .stuck import _stuck_branches


def geometry_report(mcmc=None, *, conditioned=None, samples=None, diverging=None, model_args=(),
                    model_kwargs=None, min_divergent=3, z_min=2.5, min_branch_mass=0.01,
                    warn=True) -> GeometryReport:
    """Name the walls, folds and singular points where divergences concentrate, after sampling.

    Give an ``MCMC`` run with one of ppinv's kernels (``InverseNUTS``, ``InverseHMC``,
    ``InverseMH``), or ``conditioned`` with ``samples`` of its latents grouped by chain
    (``chains × draws × ...``) and ``diverging`` (``chains × draws``; none: no divergences).

    Every solve with a restricted domain gets a margin per draw (see :func:`solve_margins`); a
    feature is *concentrated* when at least ``min_divergent`` transitions diverged, divergent
    draws lie nearer its edge than the others (the rank statistic's z-score ≥ ``z_min``), and
    within one posterior standard deviation of it. A ``UserWarning``
    names each discrete θ site that kept one value over a whole chain while other branches
    hold at least ``min_branch_mass`` of the mass (from the other chains' draws, or from the
    exact branch weights at this chain's draws); ``warn=False`` only reports it.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist, ppinv
    >>> from numpyro.infer import MCMC
    >>> def model():
    ...     c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    ...     p = numpyro.sample("p", dist.Uniform(0.0, 1.0))
    ...     numpyro.deterministic("y", c + p)
    >>> cm = ppinv.condition(model, {"y": 0.3}, free=["c"])  # p = y − c must stay in (0, 1): a wall
    >>> mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=50, num_samples=100, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> report = ppinv.diagnostics.geometry_report(mcmc)
    >>> print(report)  # doctest: +SKIP
    θ geometry: 23 divergent of 100 transitions
      * wall (solved p:float64[] must stay in its support ...) made by
          v2:float64[] = add(c:float64[], p:float64[])  at <doctest>:4 (model)
          ...
    """
    if mcmc is not None:
        conditioned = conditioned if conditioned is not None else mcmc.sampler.model
        samples = mcmc.get_samples(group_by_chain=True)
        extra = mcmc.get_extra_fields(group_by_chain=True)
        diverging = extra.get("diverging", diverging)
        model_args = tuple(getattr(mcmc, "_args", model_args) or ())
        model_kwargs = dict(getattr(mcmc, "_kwargs", None) or model_kwargs or {})
    if conditioned is None or samples is None:
        raise InputError("geometry_report needs an MCMC run, or conditioned= and samples=.")
    model_kwargs = dict(model_kwargs or {})
    shape = np.shape(next(iter(samples.values())))[:2]
    diverging = np.zeros(shape, bool) if diverging is None else np.asarray(diverging, bool).reshape(shape)
    margins = solve_margins(conditioned, samples, *model_args, batch_ndims=2, **model_kwargs)
    features = [_feature(*m, diverging, min_divergent, z_min) for m in margins]
    features.sort(key=lambda f: (not f.concentrated, -f.association))
    stuck = _stuck_branches(conditioned, samples, model_args, model_kwargs, min_branch_mass)
    if warn:
        for s in stuck:
            warnings.warn(str(s), UserWarning, stacklevel=2)
    return GeometryReport(int(np.prod(shape)), int(diverging.sum()), features, stuck)
