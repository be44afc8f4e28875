"""The gradient of a conditioned model's potential energy against finite differences (:func:`check_conditioned`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import tree_map
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import potential_energy

from .gradients import check_gradient, default_step, finite_difference_rows



@dataclass
class ConditionedReport:
    """What :func:`check_conditioned` measured.

    ``max_soundness_error``: the largest relative distance between an observed
    value and the same site recomputed by the *original* model from the latents
    the conditioned model reports (an independent check: the conditioned model's
    own report of the observation is the data by construction).
    """

    n_points: int = 0
    max_soundness_error: float = 0.0
    max_grad_error: float = 0.0
    n_grad_checked: int = 0
    n_grad_skipped: int = 0
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_conditioned(
    model,
    data=None,
    *,
    args=(),
    kwargs=None,
    key=None,
    n_points: int = 3,
    latents=None,
    perturb: float = 0.3,
    rtol: float = 1e-6,
    grad_rtol: float | None = None,
    grad_step: float | None = None,
    raise_on_failure: bool = True,
    **condition_kwargs,
) -> ConditionedReport:
    """Check a conditioned model: soundness, and ``jax.grad`` of its potential energy.

    The potential is NumPyro's, over the unconstrained continuous sites (θ sites
    and latents no observation touches) with discrete θ held fixed: what NUTS,
    HMC and SVI differentiate; its gradient is compared with central
    differences. At every point the latents the conditioned model reports are
    run through the original model, and the observed sites it computes must
    equal the data (relative ``rtol``). Points are the given ``latents`` and
    prior draws, mapped to θ by the PGF (``n_points`` of them where the
    potential is finite), each also moved by ``perturb`` (a normal step in
    unconstrained space) where the potential stays finite.

    Parameters
    ----------
    model:
        A NumPyro model (conditioned here on ``data`` with
        :func:`ppinv.condition`, which also takes ``condition_kwargs``), or a
        model :func:`ppinv.condition` already returned (then ``data`` is ``None``).
    args, kwargs:
        The model's arguments.
    latents:
        Optional list of dicts ``latent site -> value`` to start from (for
        example the draw the data were simulated from), before prior draws.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model():
    ...     a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    ...     b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * b)
    >>> check_conditioned(model, {"y": 1.5}, n_points=1).ok
    True
    """
    from ..conditioning import ConditionedModel, condition

    kwargs = dict(kwargs or {})
    args = tuple(args)
    cm = model if isinstance(model, ConditionedModel) else condition(model, data, **condition_kwargs)
    key = jax.random.PRNGKey(0) if key is None else key
    report = ConditionedReport()
    plan = cm.plan(*args, **kwargs)
    n_draws = 8 * n_points
    draws = [_theta_point(plan, lat, args, kwargs) for lat in (latents or [])]
    prior = jax.jit(jax.vmap(lambda k: _theta_point(plan, _prior_latents(cm, plan, k, args, kwargs), args, kwargs)))(
        jax.random.split(key, n_draws)
    )
    draws += [tree_map(lambda v, i=i: v[i], prior) for i in range(n_draws)]
    discrete = [plan.theta_sites[n] for n, s in plan.schedule.theta.items() if s.discrete]
    transforms = _continuous_transforms(cm, plan, draws[0], discrete, args, kwargs)
    names = sorted(transforms)

    z_example = {k: transforms[k].inv(draws[0][k]) for k in names}
    unravel = ravel_pytree(z_example)[1]

    def potential(zf, disc):
        # numpyro's own potential energy, as NUTS and SVI see it (discrete θ observed)
        return jnp.reshape(potential_energy(handlers.condition(cm, data=disc), args, kwargs, unravel(zf)), (1,))

    def soundness(zf, disc):
        values = {k: transforms[k](v) for k, v in unravel(zf).items()}
        return _observation_error(cm, plan, {**values, **disc}, args, kwargs)

    # one program: the potential, its two Jacobians and the finite-difference rows
    probe = jax.jit(lambda zf, disc, rows: (potential(zf, disc), jax.jacfwd(potential)(zf, disc),
                                            jax.jacrev(potential)(zf, disc),
                                            jax.vmap(potential, in_axes=(0, None))(rows, disc)))
    soundness = jax.jit(soundness)
    to_flat = jax.jit(lambda values: ravel_pytree({k: transforms[k].inv(values[k]) for k in names})[0])
    site_names = _flat_site_names(z_example)
    pkeys = iter(jax.random.split(jax.random.fold_in(key, 1), len(draws)))
    step = default_step(jnp.result_type(ravel_pytree(z_example)[0])) if grad_step is None else grad_step

    def evaluate(z, disc):
        rows, _ = finite_difference_rows(z, step)
        return probe(z, disc, jnp.asarray(rows, z.dtype))

    for values in draws:
        if report.n_points >= n_points:
            break
        disc = {k: values[k] for k in discrete}
        zf = to_flat({k: values[k] for k in names})
        at_draw = evaluate(zf, disc)
        if not np.all(np.isfinite(np.asarray(at_draw[0]))):
            continue
        report.n_points += 1
        moved = zf + perturb * np.asarray(jax.random.normal(next(pkeys), zf.shape, zf.dtype))
        for where, z in ((f"draw {report.n_points}", zf), (f"draw {report.n_points} (moved)", moved)):
            f0, jac_fwd, jac_rev, vals = at_draw if z is zf else evaluate(z, disc)
            if not np.all(np.isfinite(np.asarray(f0))):
                continue
            err = float(soundness(z, disc))
            report.max_soundness_error = max(report.max_soundness_error, err)
            if not err <= rtol:
                report.failures.append(f"{where}: unsound: the original model run on the reported latents is "
                                       f"{err:.3g} (relative) away from the observations, at z={z}")
            if not np.all(np.isfinite(np.asarray(jac_rev))):
                report.failures.append(f"{where}: jax.grad of the potential is not finite: {jac_rev} at z={z}")
                continue
            res = check_gradient(lambda _rows, vals=vals: vals, z, f0,
                                 {"jax.grad": jac_rev, "jax.jacfwd": jac_fwd}, step=step, rtol=grad_rtol)
            report.n_grad_checked += res.checked
            report.n_grad_skipped += res.skipped
            report.max_grad_error = max(report.max_grad_error, res.max_error)
            for name, _, j, ad, fd in res.mismatches[:4]:
                report.failures.append(
                    f"{where}: {name} of the potential w.r.t. {site_names[j]} is {ad:.10g}, finite differences {fd:.10g}"
                )
    if report.n_points == 0:
        report.failures.append(f"no start ({len(draws)} PGF points) gave a finite potential")
    if raise_on_failure and report.failures:
        raise AssertionError("check_conditioned failed:\n  " + "\n  ".join(report.failures[:10]))
    return report


def _prior_latents(cm, plan, key, args, kwargs):
    model = handlers.seed(handlers.condition(cm.model, data=plan.sample_data), key)
    tr = handlers.trace(model).get_trace(*args, **kwargs)
    return {n: tr[n]["value"] for n in plan.latents}


def _theta_point(plan, latents, args, kwargs):
    """Sampled sites of the conditioned model for given latents: θ from the PGF, untouched latents as they are."""
    theta = plan.pgf(plan.ctx_of(args, kwargs), latents)
    values = {plan.theta_sites[n]: jnp.asarray(theta[n]) for n in theta}
    values.update({n: jnp.asarray(latents[n]) for n in plan.untouched})
    return values


def _observation_error(cm, plan, values, args, kwargs):
    """Max relative distance between the observations and the original model's sites at the reported latents."""
    from ..diagnostics import recomputed_observations

    tr = handlers.trace(handlers.substitute(handlers.seed(cm, 0), data=values)).get_trace(*args, **kwargs)
    latents = {n: tr[n]["value"] for n in plan.latents}
    observed = plan.observed_values(plan.ctx_of(args, kwargs))
    err = jnp.zeros(())
    for value, obs in zip(recomputed_observations(cm, plan, latents, args, kwargs), observed):
        obs = jnp.asarray(obs, jnp.result_type(value))
        err = jnp.maximum(err, jnp.max(jnp.abs(value - obs) / (1 + jnp.abs(obs)), initial=0.0))
    return err


def _continuous_transforms(cm, plan, values, discrete, args, kwargs):
    """``site -> biject_to(support)`` for the continuous sampled sites of the conditioned model."""
    disc = {k: values[k] for k in discrete}
    model = handlers.substitute(handlers.seed(handlers.condition(cm, data=disc), 0), data=values)
    tr = handlers.trace(model).get_trace(*args, **kwargs)
    spec_support = {plan.theta_sites[n]: s.support for n, s in plan.schedule.theta.items()}
    return {
        name: biject_to(spec_support.get(name, site["fn"].support))
        for name, site in tr.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _flat_site_names(z):
    """``site[index]`` for each entry of ``ravel_pytree(z)`` (sorted keys, as ravel_pytree orders a dict)."""
    names = []
    for k in sorted(z):
        size = int(np.size(z[k]))
        names += [k] if np.ndim(z[k]) == 0 else [f"{k}[{i}]" for i in range(size)]
    return names
