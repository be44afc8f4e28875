"""HMC and NUTS over θ, started from the PGF, with exact Gibbs updates of discrete θ.

The kernels' state is :class:`~ppinv.infer._hmc_state.InverseHMCState` (``_hmc_state.py``); the Gibbs
sweep over discrete θ, shared with :class:`~ppinv.infer.InverseMH`, is ``_discrete.py``'s.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
from jax import random
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import euclidean_kinetic_energy
from numpyro.infer.initialization import init_to_sample

from ._base import InverseKernel, SiteNames
from ._branch_moves import branch_jump
from ._discrete import discrete_sweep
from ._hmc_state import InverseHMCState
from .mh import independence_move

__all__ = ["InverseHMC", "InverseNUTS", "InverseHMCState"]


class InverseHMC(InverseKernel):
    """HMC over the θ sites of a model conditioned with :func:`ppinv.condition`.

    Takes every argument of :class:`numpyro.infer.HMC`, with the same meaning
    (``step_size``, ``adapt_step_size``, ``dense_mass``, ``target_accept_prob``,
    ``num_steps``, ``trajectory_length``, ``forward_mode_differentiation``, ...);
    the mass matrix, ``dense_mass`` blocks and ``inverse_mass_matrix`` are over
    the sampled sites (θ sites and untouched latents). With one block over all
    sites (the default), NumPyro moves their unconstrained values as one vector,
    sites in sorted name order, so ``hmc_state.z`` and the adapted
    ``hmc_state.adapt_state.inverse_mass_matrix`` are arrays over that vector; a
    ``dense_mass`` of several blocks keeps NumPyro's dict of sites. What ppinv adds:

    * chains start at valid points with no user help: ``init_strategy`` gives
      values of the *original* model's latents (default
      :func:`~numpyro.infer.initialization.init_to_sample`: a prior draw), the
      PGF maps them to θ, and ``g(y_obs, θ)`` lies on the constraint set. Of
      ``init_tries`` such points a chain starts at the one of highest log
      density; with discrete θ, chains are dealt out over the branches found
      (best branch first, skipping branches of negligible density; sequential
      chains count in the order their keys are first seen). Latent values the
      strategy gives for latents the observations determine are replaced by the
      solved ones; ``init_to_value(values=...)`` may also name θ sites (by
      their names in the conditioned model) to fix θ itself;
    * discrete θ (signs, roots, periods, branches) are updated after each
      trajectory: small choices by exact Gibbs over all values, unbounded ones
      (periods) by a ±1 Metropolis step, followed (``branch_jumps=True``, the default)
      by a branch jump (:func:`~ppinv.infer._branch_moves.branch_jump`): new continuous
      coordinates drawn independently with a branch swept to at them, accepted with the
      exact Metropolis–Hastings ratio, so parts of the manifold no branch joins are visited;
    * optional independence jumps (``jump_every=k``): every ``k`` steps all θ
      are proposed from their reference distributions and accepted with the
      exact Metropolis–Hastings ratio, so separated modes are visited.

    ``MCMC.run(..., init_params=...)`` takes *constrained* values of the sampled
    sites (θ sites by name, e.g. from :func:`models.pgf_init`).

    Parameters
    ----------
    model:
        A :class:`ppinv.ConditionedModel`.
    potential_fn:
        Not supported (the potential is the conditioned model's); use
        ``numpyro.infer.HMC(potential_fn=...)`` for a hand-written potential.
    kinetic_fn, step_size, inverse_mass_matrix, adapt_step_size, adapt_mass_matrix:
        As in :class:`numpyro.infer.HMC`.
    dense_mass, target_accept_prob, num_steps, trajectory_length:
        As in :class:`numpyro.infer.HMC` (the mass matrix is over the sampled sites).
    find_heuristic_step_size, forward_mode_differentiation, regularize_mass_matrix:
        As in :class:`numpyro.infer.HMC`.
    init_strategy:
        A NumPyro init strategy applied to the original model's latents (see above).
    jump_every:
        Propose an independence jump every this many steps (0: never).
    branch_jumps:
        With discrete θ, make a branch jump after every discrete sweep.
    init_tries:
        Starting points tried per chain (the best is used).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> import jax, ppinv
    >>> def model():
    ...     a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * a)
    >>> mcmc = MCMC(ppinv.infer.InverseHMC(ppinv.condition(model, {"y": 1.0}), num_steps=5, trajectory_length=None),
    ...             num_warmup=50, num_samples=50, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    """

    _algo = "HMC"

    def __init__(
        self,
        model=None,
        potential_fn=None,
        kinetic_fn=None,
        step_size=1.0,
        inverse_mass_matrix=None,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        dense_mass=False,
        target_accept_prob=0.8,
        num_steps=None,
        trajectory_length=2 * math.pi,
        init_strategy=init_to_sample,
        find_heuristic_step_size=False,
        forward_mode_differentiation=False,
        regularize_mass_matrix=True,
        *,
        jump_every: int = 0,
        init_tries: int = 64,
        branch_jumps: bool = True,
    ):
        if num_steps is None and trajectory_length is None:
            raise ValueError("At least one of `num_steps` or `trajectory_length` must be specified.")
        if adapt_step_size and num_steps is not None and trajectory_length is not None:
            warnings.warn(
                "If both `num_steps` and `trajectory_length` are specified step size can't be adapted",
                stacklevel=2,
            )
        self._configure(model, potential_fn, kinetic_fn, init_strategy, jump_every, init_tries, branch_jumps, dict(
            step_size=step_size, inverse_mass_matrix=inverse_mass_matrix, adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass, target_accept_prob=target_accept_prob,
            num_steps=num_steps, trajectory_length=trajectory_length, max_tree_depth=10,
            find_heuristic_step_size=find_heuristic_step_size,
            forward_mode_differentiation=forward_mode_differentiation,
            regularize_mass_matrix=regularize_mass_matrix,
        ))

    def _configure(self, model, potential_fn, kinetic_fn, init_strategy, jump_every, init_tries, branch_jumps,
                   hmc_kwargs):
        name = type(self).__name__
        if potential_fn is not None:
            raise ValueError(
                f"{name} builds its potential from the conditioned model; potential_fn cannot be given. "
                f"For a hand-written potential use numpyro.infer.{self._algo}(potential_fn=...)."
            )
        super().__init__(model, init_strategy=init_strategy, init_tries=init_tries)
        for k in ("step_size", "trajectory_length"):  # as NumPyro: ints become floats
            if isinstance(hmc_kwargs[k], int) and not isinstance(hmc_kwargs[k], bool):
                hmc_kwargs[k] = float(hmc_kwargs[k])
        self._kinetic_fn = kinetic_fn if kinetic_fn is not None else euclidean_kinetic_energy
        self._jump_every = int(jump_every)
        self._branch_jumps = bool(branch_jumps)
        self._hmc_kwargs = hmc_kwargs

    # -- MCMCKernel interface ---------------------------------------------------------------
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

    def _build_core(self, target, num_warmup):
        """NumPyro's HMC/NUTS functions over the target's continuous sites (one pair per target).

        NumPyro moves one flat vector of all sites (``target.layout``) whenever the mass
        matrix is one block over all of them (the default, ``dense_mass=True``, or an
        ``inverse_mass_matrix`` keyed by the tuple of all sites in sorted order): its
        compile time then grows linearly in the number of sites. A structure of several
        blocks needs the sites apart, and NumPyro moves the dict of sites.
        """
        hk = self._hmc_kwargs
        flat = _one_block_mass(target.layout.names, hk["dense_mass"], hk["inverse_mass_matrix"])
        layout = target.layout if flat is not None else None
        if layout is not None:
            dense_mass, inverse_mass_matrix = flat

            def potential_fn_gen(disc, args, kwargs):
                potential = target.potential_fn(disc, args, kwargs)
                return lambda z: potential(layout.unravel(z))
        else:
            dense_mass, inverse_mass_matrix = hk["dense_mass"], hk["inverse_mass_matrix"]
            if isinstance(dense_mass, bool):
                dense_mass = [tuple(sorted(target.continuous_sites))] if dense_mass and target.continuous_sites else []
            potential_fn_gen = target.potential_fn
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, kinetic_fn=self._kinetic_fn,
                                         algo=self._algo)
        return dict(init_kernel=init_kernel, sample_kernel=sample_kernel, dense_mass=dense_mass,
                    inverse_mass_matrix=inverse_mass_matrix, layout=layout)

    def _sites_of(self, z):
        """The continuous sites (by name) of NumPyro's coordinates ``z``."""
        layout = self._current.core["layout"]
        return z if layout is None else layout.unravel(z)

    def _coordinates_of(self, z):
        """NumPyro's coordinates of the continuous sites ``z`` (by name)."""
        layout = self._current.core["layout"]
        return z if layout is None else layout.ravel(z)

    def init_state(self, values, key, model_args, model_kwargs):
        """The state of one chain starting at ``values`` (constrained, by site name)."""
        target, core, hk = self._target, self._current.core, self._hmc_kwargs
        # ppinv's own moves need a key only with discrete θ or jumps (no split otherwise)
        key_hmc, key_state = random.split(key) if (target.discrete_sites or self._jump_every) else (key, key)
        disc = {k: jnp.asarray(values[k], target.discrete_dtype[k]) for k in target.discrete_sites}
        z = self._coordinates_of(target.unconstrain(values))
        hmc_state = core["init_kernel"](
            z,
            num_warmup=self._current.num_warmup,
            step_size=hk["step_size"],
            inverse_mass_matrix=core["inverse_mass_matrix"],
            adapt_step_size=hk["adapt_step_size"],
            adapt_mass_matrix=hk["adapt_mass_matrix"],
            dense_mass=core["dense_mass"],
            target_accept_prob=hk["target_accept_prob"],
            num_steps=hk["num_steps"],
            trajectory_length=hk["trajectory_length"],
            max_tree_depth=hk["max_tree_depth"],
            find_heuristic_step_size=hk["find_heuristic_step_size"],
            forward_mode_differentiation=hk["forward_mode_differentiation"],
            regularize_mass_matrix=hk["regularize_mass_matrix"],
            model_args=(disc, tuple(model_args), model_kwargs),
            model_kwargs={},
            rng_key=key_hmc,
        )
        zero = jnp.zeros(())
        return InverseHMCState({**self._sites_of(hmc_state.z), **disc}, hmc_state, disc, zero, zero, key_state,
                               SiteNames(target.plan.latents))

    # -- one step ----------------------------------------------------------------------------
    def step(self, state, model_args, model_kwargs):
        """One transition of one chain (for model arguments given at run time)."""
        target = self._target
        args, kwargs = tuple(model_args), model_kwargs or {}
        hmc_state = self._current.core["sample_kernel"](
            state.hmc_state, model_args=(state.discrete, args, kwargs), model_kwargs={}
        )
        disc = state.discrete
        z = self._sites_of(hmc_state.z)
        if not (target.discrete_sites or self._jump_every):
            # nothing of ppinv's own draws randomness: the key is carried unchanged (no split per step)
            return state._replace(z={**z, **disc}, hmc_state=hmc_state)
        rng_key, key_disc, key_jump = random.split(state.rng_key, 3)
        disc_acc, jump_acc = state.discrete_accept, state.jump_accept
        n = hmc_state.i + 1
        if target.discrete_sites:
            disc, acc = discrete_sweep(target, key_disc, z, disc, args, kwargs)
            disc_acc = disc_acc + (acc - disc_acc) / n
            if self._branch_jumps and z:
                z, disc, _ = branch_jump(target, random.fold_in(key_disc, 1), z, disc, args, kwargs)
                hmc_state = hmc_state._replace(z=self._coordinates_of(z))
        if self._jump_every:
            do_jump = (hmc_state.i % self._jump_every) == 0
            z_new, disc_new, acc = independence_move(target, key_jump, z, disc, args, kwargs)
            z = jax.tree_util.tree_map(lambda a, b: jnp.where(do_jump, a, b), z_new, z)
            disc = jax.tree_util.tree_map(lambda a, b: jnp.where(do_jump, a, b), disc_new, disc)
            jump_acc = jnp.where(do_jump, jump_acc + (acc - jump_acc) / (n // self._jump_every + 1), jump_acc)
            hmc_state = hmc_state._replace(z=self._coordinates_of(z))
        # the discrete θ or the jump changed the target under the HMC state: refresh its potential
        pe, grad = _potential_and_grad(
            lambda c: target.potential(self._sites_of(c), disc, args, kwargs), hmc_state.z,
            self._hmc_kwargs["forward_mode_differentiation"],
        )
        hmc_state = hmc_state._replace(potential_energy=pe, z_grad=grad)
        return InverseHMCState({**z, **disc}, hmc_state, disc, disc_acc, jump_acc, rng_key, state.model_sites)


def _potential_and_grad(potential, z, forward_mode_differentiation):
    """The potential and its gradient, by forward mode where the kernel was asked to use it
    (a potential through ``while_loop`` has no reverse-mode derivative)."""
    if not forward_mode_differentiation:
        return jax.value_and_grad(potential)(z)
    grad, pe = jax.jacfwd(lambda c: (potential(c),) * 2, has_aux=True)(z)
    return pe, grad


class InverseNUTS(InverseHMC):
    """NUTS over θ; see :class:`InverseHMC` for what ppinv adds.

    Takes every argument of :class:`numpyro.infer.NUTS` (``max_tree_depth``,
    ``target_accept_prob``, ``dense_mass``, ``init_strategy``,
    ``forward_mode_differentiation``, ...) with the same meaning, plus
    ``jump_every`` and ``init_tries``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> import ppinv
    >>> def model():
    ...     a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    ...     b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * b)
    >>> kernel = ppinv.infer.InverseNUTS(ppinv.condition(model, {"y": 2.0}), max_tree_depth=8)
    >>> mcmc = MCMC(kernel, num_warmup=100, num_samples=100, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> samples = mcmc.get_samples()     # "a", "b", "y" (== 2.0) and θ
    """

    _algo = "NUTS"

    def __init__(
        self,
        model=None,
        potential_fn=None,
        kinetic_fn=None,
        step_size=1.0,
        inverse_mass_matrix=None,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        dense_mass=False,
        target_accept_prob=0.8,
        trajectory_length=None,
        max_tree_depth=10,
        init_strategy=init_to_sample,
        find_heuristic_step_size=False,
        forward_mode_differentiation=False,
        regularize_mass_matrix=True,
        *,
        jump_every: int = 0,
        init_tries: int = 64,
        branch_jumps: bool = True,
    ):
        self._configure(model, potential_fn, kinetic_fn, init_strategy, jump_every, init_tries, branch_jumps, dict(
            step_size=step_size, inverse_mass_matrix=inverse_mass_matrix, adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass, target_accept_prob=target_accept_prob,
            num_steps=None, trajectory_length=trajectory_length, max_tree_depth=max_tree_depth,
            find_heuristic_step_size=find_heuristic_step_size,
            forward_mode_differentiation=forward_mode_differentiation,
            regularize_mass_matrix=regularize_mass_matrix,
        ))


def _one_block_mass(names, dense_mass, inverse_mass_matrix):
    """``(dense, inverse mass matrix)`` over the flat vector of the sites ``names`` (sorted), or ``None``.

    ``None`` where the mass structure asked for has blocks other than all sites together.
    """
    if not names:
        return None
    if isinstance(dense_mass, bool):
        dense = dense_mass
    elif [tuple(b) for b in dense_mass] in ([], [names]):
        dense = bool(dense_mass)
    else:
        return None
    if isinstance(inverse_mass_matrix, dict):
        if set(inverse_mass_matrix) != {names}:
            return None
        inverse_mass_matrix = inverse_mass_matrix[names]
    return dense, inverse_mass_matrix
