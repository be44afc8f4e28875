"""HMC and NUTS over θ, started from the PGF, with exact Gibbs updates of discrete θ."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import euclidean_kinetic_energy
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from ._target import Target, as_conditioned, discrete_neighbours, pgf_initial_values
from .mh import independence_move

__all__ = ["InverseHMC", "InverseNUTS", "InverseHMCState"]


class InverseHMCState(NamedTuple):
    """State of :class:`InverseHMC` / :class:`InverseNUTS`.

    - **z** — every sampled site: unconstrained continuous values and discrete θ.
    - **hmc_state** — NumPyro's ``HMCState`` over the continuous sites.
    - **discrete** — current discrete θ values.
    - **discrete_accept** — running mean acceptance of discrete moves.
    - **jump_accept** — running mean acceptance of independence jumps (if enabled).
    - **rng_key** — random key for the next step.
    """

    z: dict
    hmc_state: Any
    discrete: dict
    discrete_accept: Any
    jump_accept: Any
    rng_key: Any

    @property
    def diverging(self):
        return self.hmc_state.diverging

    @property
    def num_steps(self):
        return self.hmc_state.num_steps

    @property
    def potential_energy(self):
        return self.hmc_state.potential_energy

    @property
    def accept_prob(self):
        return self.hmc_state.accept_prob

    @property
    def adapt_state(self):
        return self.hmc_state.adapt_state


class InverseHMC(MCMCKernel):
    """HMC over the θ sites of a model conditioned with :func:`ppinv.condition`.

    Differences from NumPyro's HMC on the same model:

    * chains start at valid points with no user help: ``x`` is drawn from the
      prior, ``θ = pgf(x)``, and ``g(y_obs, θ)`` lies on the constraint set;
    * discrete θ (signs, roots, periods, branches) are updated after each
      trajectory: small choices by exact Gibbs over all values, unbounded ones
      (periods) by a ±1 Metropolis step;
    * optional independence jumps (``jump_every=k``): every ``k`` steps all θ
      are proposed from their reference distributions and accepted with the
      exact Metropolis–Hastings ratio, so separated modes are visited.

    All keyword arguments not listed are passed to NumPyro's HMC/NUTS core
    (``step_size``, ``adapt_step_size``, ``dense_mass``, ``target_accept_prob``,
    ``max_tree_depth``, ``trajectory_length``, ``num_steps``...).

    Parameters
    ----------
    model:
        A :class:`ppinv.ConditionedModel`.
    jump_every:
        Propose an independence jump every this many steps (0: never).
    init_tries:
        Prior draws tried when looking for a valid starting point.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> import jax, ppinv
    >>> def model():
    ...     a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * a)
    >>> mcmc = MCMC(ppinv.infer.InverseNUTS(ppinv.condition(model, {"y": 1.0})),
    ...             num_warmup=50, num_samples=50, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    """

    _algo = "HMC"

    def __init__(self, model, *, jump_every: int = 0, init_tries: int = 64, **hmc_kwargs):
        self._model = as_conditioned(model, type(self).__name__)
        self._jump_every = int(jump_every)
        self._init_tries = init_tries
        defaults = dict(
            step_size=1.0,
            inverse_mass_matrix=None,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            dense_mass=False,
            target_accept_prob=0.8,
            num_steps=None,
            trajectory_length=2 * jnp.pi,
            max_tree_depth=10,
            find_heuristic_step_size=False,
            regularize_mass_matrix=True,
        )
        unknown = set(hmc_kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(unknown)}.")
        defaults.update(hmc_kwargs)
        self._hmc_kwargs = defaults
        self._target = None
        self._sample_fn = None
        self._vectorized = False

    # -- MCMCKernel interface ---------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def sample_field(self):
        return "z"

    @property
    def default_fields(self):
        return ("z", "diverging")

    def get_diagnostics_str(self, state):
        hs = state.hmc_state
        s = f"{hs.num_steps} steps of size {hs.adapt_state.step_size:.2e}. acc. prob={hs.mean_accept_prob:.2f}"
        if self._target is not None and self._target.discrete_sites:
            s += f" discrete acc.={state.discrete_accept:.2f}"
        if self._jump_every:
            s += f" jump acc.={state.jump_accept:.2f}"
        return s

    def postprocess_fn(self, model_args, model_kwargs):
        if self._target is None:
            return lambda z: z
        return self._target.postprocess_fn(model_args, model_kwargs)

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
        model_args = tuple(model_args)
        self._vectorized = not is_prng_key(rng_key)
        keys = rng_key if self._vectorized else rng_key[None]
        inits = []
        for i, k in enumerate(keys):
            if init_params is not None:
                pick = init_params if not self._vectorized else jax.tree_util.tree_map(lambda v: v[i], init_params)
            else:
                pick = pgf_initial_values(self._model, random.fold_in(k, 1), model_args, model_kwargs, self._init_tries)
            inits.append(pick)
        self.setup(num_warmup, model_args, model_kwargs, inits[0])
        if self._vectorized:
            stacked = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *inits)
            init = jax.vmap(lambda v, k: self.init_state(v, k, model_args, model_kwargs))
            state = jax.jit(init)(stacked, keys)
            self._sample_fn = jax.vmap(self.step, in_axes=(0, None, None))
        else:
            state = jax.jit(lambda v, k: self.init_state(v, k, model_args, model_kwargs))(inits[0], keys[0])
            self._sample_fn = self.step
        return state

    def setup(self, num_warmup, model_args, model_kwargs, example_values):
        """Build the target and the HMC core (once, from example arguments and values)."""
        self._target = target = Target(self._model, model_args, model_kwargs, example_values)
        self._num_warmup = num_warmup
        self._init_kernel, self._sample_kernel = hmc(
            potential_fn_gen=lambda disc, args, kwargs: target.potential_fn(disc, args, kwargs),
            kinetic_fn=euclidean_kinetic_energy,
            algo=self._algo,
        )
        dense_mass = self._hmc_kwargs["dense_mass"]
        if isinstance(dense_mass, bool):
            dense_mass = [tuple(sorted(target.continuous_sites))] if dense_mass and target.continuous_sites else []
        self._dense_mass = dense_mass
        return target

    def init_state(self, values, key, model_args, model_kwargs):
        """The state of one chain starting at ``values`` (constrained, by site name)."""
        target, hk = self._target, self._hmc_kwargs
        key_hmc, key_state = random.split(key)
        disc = {k: jnp.asarray(values[k], target.discrete_dtype[k]) for k in target.discrete_sites}
        z = target.unconstrain(values)
        hmc_state = self._init_kernel(
            z,
            num_warmup=self._num_warmup,
            step_size=hk["step_size"],
            inverse_mass_matrix=hk["inverse_mass_matrix"],
            adapt_step_size=hk["adapt_step_size"],
            adapt_mass_matrix=hk["adapt_mass_matrix"],
            dense_mass=self._dense_mass,
            target_accept_prob=hk["target_accept_prob"],
            num_steps=hk["num_steps"],
            trajectory_length=hk["trajectory_length"],
            max_tree_depth=hk["max_tree_depth"],
            find_heuristic_step_size=hk["find_heuristic_step_size"],
            regularize_mass_matrix=hk["regularize_mass_matrix"],
            model_args=(disc, tuple(model_args), model_kwargs),
            model_kwargs={},
            rng_key=key_hmc,
        )
        zero = jnp.zeros(())
        return InverseHMCState({**hmc_state.z, **disc}, hmc_state, disc, zero, zero, key_state)

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state, tuple(model_args), model_kwargs or {})

    # -- one step ----------------------------------------------------------------------------
    def step(self, state, model_args, model_kwargs):
        """One transition of one chain (for model arguments given at run time)."""
        target = self._target
        args, kwargs = tuple(model_args), model_kwargs or {}
        hmc_state = self._sample_kernel(state.hmc_state, model_args=(state.discrete, args, kwargs), model_kwargs={})
        rng_key, key_disc, key_jump = random.split(state.rng_key, 3)
        disc = state.discrete
        disc_acc = state.discrete_accept
        jump_acc = state.jump_accept
        changed = False
        n = hmc_state.i + 1
        if target.discrete_sites:
            disc, acc = discrete_sweep(target, key_disc, hmc_state.z, disc, args, kwargs)
            disc_acc = disc_acc + (acc - disc_acc) / n
            changed = True
        if self._jump_every:
            do_jump = (hmc_state.i % self._jump_every) == 0
            z_new, disc_new, acc = independence_move(target, key_jump, hmc_state.z, disc, args, kwargs)
            z_new = jax.tree_util.tree_map(lambda a, b: jnp.where(do_jump, a, b), z_new, hmc_state.z)
            disc = jax.tree_util.tree_map(lambda a, b: jnp.where(do_jump, a, b), disc_new, disc)
            jump_acc = jnp.where(do_jump, jump_acc + (acc - jump_acc) / (n // self._jump_every + 1), jump_acc)
            hmc_state = hmc_state._replace(z=z_new)
            changed = True
        if changed:
            pe, grad = jax.value_and_grad(target.potential_fn(disc, args, kwargs))(hmc_state.z)
            hmc_state = hmc_state._replace(potential_energy=pe, z_grad=grad)
        return InverseHMCState({**hmc_state.z, **disc}, hmc_state, disc, disc_acc, jump_acc, rng_key)


class InverseNUTS(InverseHMC):
    """NUTS over θ; see :class:`InverseHMC` for what ppinv adds.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> import ppinv
    >>> def model():
    ...     a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    ...     b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * b)
    >>> kernel = ppinv.infer.InverseNUTS(ppinv.condition(model, {"y": 2.0}))
    >>> mcmc = MCMC(kernel, num_warmup=100, num_samples=100, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> samples = mcmc.get_samples()     # "a", "b", "y" (== 2.0) and θ
    """

    _algo = "NUTS"


def discrete_sweep(target, key, z, disc, args=None, kwargs=None):
    """One systematic sweep over every discrete θ element; returns (new values, mean acceptance)."""
    pe_of = lambda d: target.potential(z, d, args, kwargs)  # noqa: E731
    total, accepted = 0, jnp.zeros(())
    for name in target.discrete_sites:
        kind, k = discrete_neighbours(target.discrete_support[name])
        size = int(jnp.size(disc[name]))
        lo = int(getattr(target.discrete_support[name], "lower_bound", 0)) if kind == "enumerate" else 0
        key, sub = random.split(key)

        def body(i, carry, name=name, kind=kind, k=k, lo=lo):
            d, acc, key = carry
            key, k1, k2 = random.split(key, 3)
            flat = d[name].reshape(-1)
            if kind == "enumerate":
                cands = lo + jnp.arange(k, dtype=flat.dtype)
                pes = jax.vmap(lambda c: pe_of({**d, name: flat.at[i].set(c).reshape(d[name].shape)}))(cands)
                logits = jnp.where(jnp.isfinite(pes), -pes, -jnp.inf)
                choice = random.categorical(k1, logits)
                new = flat.at[i].set(cands[choice])
                moved = (cands[choice] != flat[i]).astype(acc.dtype)
                return {**d, name: new.reshape(d[name].shape)}, acc + moved, key
            step = jnp.where(random.bernoulli(k1), 1, -1).astype(flat.dtype)
            prop = {**d, name: flat.at[i].add(step).reshape(d[name].shape)}
            log_a = pe_of(d) - pe_of(prop)
            accept = jnp.log(random.uniform(k2)) < jnp.where(jnp.isfinite(log_a), log_a, -jnp.inf)
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), prop, d)
            return new, acc + accept.astype(acc.dtype), key

        disc, accepted, _ = jax.lax.fori_loop(0, size, body, (disc, accepted, sub))
        total += size
    return disc, accepted / max(total, 1)
