"""Metropolis–Hastings whose proposals come from the inverse."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from numpyro.infer.initialization import init_to_sample

from ._base import Coordinates, InverseKernel, SiteNames
from ._discrete import discrete_sweep
from ._target import Target

__all__ = ["InverseMH", "InverseMHState", "independence_move"]


def _reference_log_prob(target, z, disc):
    """log density of the reference proposal at (unconstrained z, discrete), over θ sites only."""
    total = jnp.zeros(())
    for site, ref in target.theta_refs.items():
        if site in disc:
            total = total + ref.log_prob(disc[site])
        else:
            t = target.transforms[site]
            u = z[site]
            x = t(u)
            total = total + ref.log_prob(x) + jnp.sum(t.log_abs_det_jacobian(u, x))
    return total


def independence_move(target: Target, key, z, disc, args=None, kwargs=None):
    """Propose every θ site from its reference distribution; exact MH acceptance.

    Returns ``(z, disc, accepted)`` with the new values where accepted.
    """
    keys = random.split(key, len(target.theta_refs) + 1)
    z_new, d_new = dict(z), dict(disc)
    for k, (site, ref) in zip(keys[1:], target.theta_refs.items()):
        draw = ref.sample(k)
        if site in disc:
            d_new[site] = draw.astype(disc[site].dtype)
        else:
            z_new[site] = target.transforms[site].inv(draw).astype(z[site].dtype)
    pe_old = target.potential(z, disc, args, kwargs)
    pe_new = target.potential(z_new, d_new, args, kwargs)
    log_a = (pe_old - pe_new) + _reference_log_prob(target, z, disc) - _reference_log_prob(target, z_new, d_new)
    log_a = jnp.where(jnp.isfinite(log_a), log_a, -jnp.inf)
    accept = jnp.log(random.uniform(keys[0])) < log_a
    pick = lambda a, b: jnp.where(accept, a, b)  # noqa: E731
    return (
        jax.tree_util.tree_map(pick, z_new, z),
        jax.tree_util.tree_map(pick, d_new, disc),
        accept.astype(jnp.result_type(float)),
    )


class InverseMHState(NamedTuple):
    """State of :class:`InverseMH`.

    - **z** — every sampled site (unconstrained continuous, and discrete θ).
    - **potential_energy** — at ``z``.
    - **step_size** — random-walk scale in unconstrained space (adapted in warmup).
    - **accept_rw**, **accept_jump**, **accept_discrete** — running mean acceptance.
    - **i** — iteration.
    - **rng_key**.
    - **model_sites** — the model's latent sample sites (static).
    """

    z: dict
    potential_energy: Any
    step_size: Any
    accept_rw: Any
    accept_jump: Any
    accept_discrete: Any
    i: Any
    rng_key: Any
    model_sites: Any = SiteNames(())

    @property
    def coordinates(self):
        """``z`` as the sample field MCMC collects."""
        return Coordinates(self.z, self.model_sites.names)


class InverseMH(InverseKernel):
    """Metropolis–Hastings with proposals from the inverse of a conditioned model.

    Each step makes, in turn:

    * a Gaussian random walk on all continuous sites in unconstrained θ space
      (scale adapted during warmup towards ``target_accept``);
    * a sweep over the discrete θ (exact Gibbs for signs/roots/branches, ±1
      steps for periods) — jumps between separated preimages of ``y``;
    * with probability ``jump_prob``, an independence proposal of every θ site
      from its reference distribution.

    Chains start as :class:`InverseHMC`'s do (``init_strategy``, ``init_tries``).

    Every proposal is accepted with the exact Metropolis–Hastings ratio, so the
    chain targets the exact conditional. Compose with NUTS by
    ``InverseNUTS(..., jump_every=k)``, or use alone on small problems.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> import ppinv
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 3.0))
    ...     numpyro.deterministic("y", jax.numpy.sin(x))
    >>> kernel = ppinv.infer.InverseMH(ppinv.condition(model, {"y": 0.5}))
    >>> mcmc = MCMC(kernel, num_warmup=200, num_samples=200, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    """

    def __init__(self, model, *, step_size=0.5, target_accept=0.3, jump_prob=0.2, init_strategy=init_to_sample,
                 init_tries=64):
        super().__init__(model, init_strategy=init_strategy, init_tries=init_tries)
        self._step_size = step_size
        self._target_accept = target_accept
        self._jump_prob = jump_prob

    def get_diagnostics_str(self, state):
        return (
            f"rw acc.={state.accept_rw:.2f} step={state.step_size:.2e} "
            f"jump acc.={state.accept_jump:.2f} discrete acc.={state.accept_discrete:.2f}"
        )

    def init_state(self, values, key, model_args, model_kwargs):
        """The state of one chain starting at ``values`` (constrained, by site name)."""
        target = self._target
        disc = {k: jnp.asarray(values[k], target.discrete_dtype[k]) for k in target.discrete_sites}
        z = target.unconstrain(values)
        pe = target.potential(z, disc, tuple(model_args), model_kwargs)
        zero = jnp.zeros(())
        return InverseMHState({**z, **disc}, pe, jnp.asarray(self._step_size, pe.dtype), zero, zero, zero, 0, key,
                              SiteNames(target.plan.latents))

    def _draws(self, target):
        """The parts of a step that draw randomness, in the order their keys are split off."""
        parts = []
        if target.continuous_sites:
            parts += ["walk", "walk_accept"]
        if target.discrete_sites:
            parts.append("discrete")
        if self._jump_prob > 0 and target.theta_refs:
            parts += ["jump", "do_jump"]
        return parts

    def step(self, state, args, kwargs):
        """One transition of one chain (for model arguments given at run time).

        The state's key is split once per step, into the next key and one key per part that
        draws (a part that draws nothing gets none); the random walk's noise over all
        continuous sites is one draw of the flat vector of their unconstrained values.
        """
        target = self._target
        parts = self._draws(target)
        if parts:
            key, *part_keys = random.split(state.rng_key, 1 + len(parts))
        else:  # nothing draws: the key is carried unchanged
            key, part_keys = state.rng_key, []
        keys = dict(zip(parts, part_keys))
        disc = {k: state.z[k] for k in target.discrete_sites}
        z = {k: state.z[k] for k in target.continuous_sites}
        n = state.i + 1
        # 1. random walk on the continuous sites
        acc_rw = state.accept_rw
        step = state.step_size
        if z:
            layout = target.layout
            noise = layout.unravel(random.normal(keys["walk"], (layout.size,), layout.dtype))
            prop = {k: z[k] + step * noise[k].astype(jnp.result_type(z[k])) for k in z}
            pe_prop = target.potential(prop, disc, args, kwargs)
            log_a = state.potential_energy - pe_prop
            log_a = jnp.where(jnp.isfinite(log_a), log_a, -jnp.inf)
            accept = jnp.log(random.uniform(keys["walk_accept"])) < log_a
            z = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), prop, z)
            a_prob = jnp.minimum(1.0, jnp.exp(log_a))
            acc_rw = acc_rw + (a_prob - acc_rw) / n
            warm = state.i < self._current.num_warmup
            # Robbins–Monro adaptation of the log step size during warmup only
            step = jnp.where(warm, step * jnp.exp((a_prob - self._target_accept) / jnp.sqrt(n)), step)
        # 2. discrete sweep
        acc_d = state.accept_discrete
        if disc:
            disc, a = discrete_sweep(target, keys["discrete"], z, disc, args, kwargs)
            acc_d = acc_d + (a - acc_d) / n
        # 3. independence jump
        acc_j = state.accept_jump
        if "jump" in keys:
            do = random.bernoulli(keys["do_jump"], self._jump_prob)
            z2, d2, a = independence_move(target, keys["jump"], z, disc, args, kwargs)
            z = jax.tree_util.tree_map(lambda a_, b_: jnp.where(do, a_, b_), z2, z)
            disc = jax.tree_util.tree_map(lambda a_, b_: jnp.where(do, a_, b_), d2, disc)
            acc_j = jnp.where(do, acc_j + 0.05 * (a - acc_j), acc_j)  # moving average over jumps
        pe = target.potential(z, disc, args, kwargs)
        return InverseMHState({**z, **disc}, pe, step, acc_rw, acc_j, acc_d, state.i + 1, key, state.model_sites)
