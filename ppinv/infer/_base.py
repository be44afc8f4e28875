"""The base of ppinv's kernels: start-up and post-processing compiled once per kernel.

NumPyro's ``MCMC`` calls ``init`` once per chain (sequential chains) or once
for all (vectorized), and applies ``postprocess_fn`` to every draw, once
eagerly on the initial state. A kernel here keeps, per argument signature and
number of warm-up steps, one :class:`_Programs` record: the sampling target,
the subclass's core (NumPyro's HMC functions, say), and jitted programs for

* the start-up — PGF start (best of ``init_tries``) plus the initial state,
  ``vmap``-ed over chain keys and chain indices;
* the start-up from given values (``init_params``);
* the post-processing (θ → latents through the inverse).

So 2 sequential chains, 4 vectorized chains and a second ``MCMC.run`` with
arguments of the same shapes compile each program once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from .._compat import is_concrete
from ._args import ModelArgs
from ._start import StartRule, raise_if_no_valid_start, start_point
from ._target import Target, as_conditioned

__all__ = ["InverseKernel"]


def _key_bytes(key):
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data).tobytes()


def _first(tree):
    return jax.tree_util.tree_map(lambda v: v[0], tree)


class _Programs:
    """What one kernel compiles for one argument signature and warm-up length."""

    def __init__(self, kernel, target, margs, num_warmup):
        self.target = target
        self.margs = margs
        self.num_warmup = num_warmup
        self.core = kernel._build_core(target, num_warmup)
        self._postprocess = {}
        rule, tries = kernel._start_rule, kernel._init_tries

        def one_chain(key, chain_index, dynamic):
            args, kwargs = margs.rebuild(dynamic)
            plan = kernel._model.plan(*args, **kwargs)
            key_start, key_chain = random.split(key)
            values, _, valid = start_point(kernel._model, plan, rule, key_start, chain_index, args, kwargs, tries)
            return kernel._init_state_with(self, values, key_chain, args, kwargs), valid

        def ppinv_start(keys, chain_indices, dynamic):
            return jax.vmap(one_chain, in_axes=(0, 0, None))(keys, chain_indices, dynamic)

        def ppinv_start_one(key, chain_index, dynamic):
            return _first(ppinv_start(key[None], jnp.asarray(chain_index)[None], dynamic))

        def from_values(values, key, dynamic):
            args, kwargs = margs.rebuild(dynamic)
            return kernel._init_state_with(self, values, key, args, kwargs)

        def ppinv_start_from_values(values, keys, dynamic):
            return jax.vmap(from_values, in_axes=(0, 0, None))(values, keys, dynamic)

        def ppinv_start_from_values_one(values, key, dynamic):
            batch = jax.tree_util.tree_map(lambda v: v[None], values)
            return _first(ppinv_start_from_values(batch, key[None], dynamic))

        self.start = jax.jit(ppinv_start)
        self.start_one = jax.jit(ppinv_start_one)
        self.from_values = jax.jit(ppinv_start_from_values)
        self.from_values_one = jax.jit(ppinv_start_from_values_one)

    def postprocess(self, margs):
        """The jitted post-processing for arguments of ``margs``'s signature."""
        fn = self._postprocess.get(margs.signature)
        if fn is None:
            target = self.target

            def ppinv_postprocess(z_all, dynamic):
                args, kwargs = margs.rebuild(dynamic)
                return target.postprocess_fn(args, kwargs)(z_all)

            fn = self._postprocess[margs.signature] = jax.jit(ppinv_postprocess)
        return fn


@jax.tree_util.register_pytree_node_class
class SiteNames:
    """The model's latent sample sites, carried by a kernel state as static data (no leaves)."""

    __slots__ = ("names",)

    def __init__(self, names):
        self.names = tuple(names)

    def tree_flatten(self):
        return (), self.names

    @classmethod
    def tree_unflatten(cls, names, _):
        return cls(names)


@jax.tree_util.register_pytree_node_class
class Coordinates(dict):
    """A chain's θ coordinates ``z`` as the sample field MCMC collects.

    ``MCMC.print_summary`` keeps the post-processed sites whose names are ``in``
    the sample field, to drop deterministic sites. θ coordinates are not the
    model's sites (a solved latent has none), so membership here is the model's
    latent sample sites: every latent is summarised, deterministic sites are not.
    """

    def __init__(self, z, sites=()):
        super().__init__(z)
        self.sites = frozenset(sites)

    def __contains__(self, name):
        return name in self.sites

    def tree_flatten(self):
        keys = tuple(sorted(dict.keys(self)))
        return tuple(dict.__getitem__(self, k) for k in keys), (keys, tuple(sorted(self.sites)))

    @classmethod
    def tree_unflatten(cls, aux, children):
        keys, sites = aux
        return cls(dict(zip(keys, children)), sites)


def _theta(z):
    """θ coordinates as a plain dict (MCMC hands post-processing the sample field)."""
    return dict(z) if isinstance(z, Coordinates) else z


class InverseKernel(MCMCKernel):
    """Start-up, post-processing and the ``MCMCKernel`` plumbing shared by ppinv's kernels.

    Subclasses define ``_build_core(target, num_warmup)`` (what their steps need
    besides the target), ``init_state(values, key, model_args, model_kwargs)``
    (one chain's state at constrained ``values``) and ``step(state, model_args,
    model_kwargs)`` (one transition of one chain).
    """

    def __init__(self, model, *, init_strategy=None, init_tries: int = 64):
        self._model = as_conditioned(model, type(self).__name__)
        self._start_rule = StartRule(init_strategy)
        self._init_tries = int(init_tries)
        self._programs = {}
        self._current = None
        self._chain_numbers = {}
        self._sample_fn = None
        self._vectorized = False

    # -- MCMCKernel interface ---------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def sample_field(self):
        # ``state.z`` holds θ coordinates, not the model's sites. MCMC.print_summary keeps
        # only the keys of a dict sample field (to drop deterministic sites), which would hide
        # every solved latent; the view ``state.coordinates`` is not a dict, so it keeps them all.
        return "coordinates"

    @property
    def _target(self):
        return None if self._current is None else self._current.target

    def postprocess_fn(self, model_args, model_kwargs):
        if self._current is None:
            return _theta
        margs = ModelArgs(model_args, model_kwargs)
        fn = self._current.postprocess(margs)
        return lambda z: fn(_theta(z), margs.dynamic)

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state, tuple(model_args), model_kwargs or {})

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        margs = ModelArgs(model_args, model_kwargs)
        self._vectorized = vectorized = not is_prng_key(rng_key)
        example = None
        if init_params is not None:
            example = _first(init_params) if vectorized else init_params
        progs = self._programs_for(num_warmup, margs, example)
        if init_params is not None:
            run = progs.from_values if vectorized else progs.from_values_one
            state = run(init_params, rng_key, margs.dynamic)
        elif vectorized:
            state, valid = progs.start(rng_key, np.arange(rng_key.shape[0]), margs.dynamic)
            self._check_start(progs, margs, rng_key, valid)
        else:
            state, valid = progs.start_one(rng_key, self._chain_number(rng_key), margs.dynamic)
            self._check_start(progs, margs, rng_key, valid)
        self._sample_fn = jax.vmap(self.step, in_axes=(0, None, None)) if vectorized else self.step
        return state

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, num_warmup, model_args=(), model_kwargs=None, example_values=None):
        """The target for these arguments (built once per signature and warm-up length)."""
        return self._programs_for(num_warmup, ModelArgs(model_args, model_kwargs), example_values).target

    def _programs_for(self, num_warmup, margs, example_values=None):
        key = (margs.signature, int(num_warmup))
        progs = self._programs.get(key)
        if progs is None:
            args, kwargs = margs.rebuild(margs.dynamic)
            if example_values is None:
                example_values = self._abstract_start(margs)
            target = Target(self._model, args, kwargs, example_values)
            progs = self._programs[key] = _Programs(self, target, margs, int(num_warmup))
        self._current = progs
        self._num_warmup = progs.num_warmup
        return progs

    def _abstract_start(self, margs):
        """Shapes and dtypes of a start (by site): θ as the plan declares it, untouched latents as traced."""
        args, kwargs = margs.rebuild(margs.dynamic)
        plan = self._model.plan(*args, **kwargs)
        spec = plan.schedule.theta
        values = {plan.theta_sites[n]: jax.ShapeDtypeStruct(tuple(s.shape), s.dtype) for n, s in spec.items()}
        for n in plan.untouched:
            values[n] = jax.ShapeDtypeStruct(tuple(plan.sites[n].shape), plan.sites[n].dtype)
        return values

    def _chain_number(self, key):
        """The chain a sequential ``init`` starts: in order of first use of its key (−1 if traced).

        The number decides which discrete branch the chain starts on; the same key
        always gets the same number, so repeated runs with one key repeat exactly.
        """
        if not is_concrete(key):
            return -1
        return self._chain_numbers.setdefault(_key_bytes(key), len(self._chain_numbers))

    def _check_start(self, progs, margs, keys, valid):
        """Fail with the reason when a chain found no valid start (``keys``: the chain's key or keys)."""
        if not all(is_concrete(d) for d in margs.dynamic):
            return
        if not is_concrete(valid):
            # Traced keys (chain_method="parallel" initialises inside pmap): check with a
            # concrete key that a valid start exists at all, to fail here with the reason
            # instead of running chains at −∞.
            with jax.ensure_compile_time_eval():
                keys = random.PRNGKey(0)
                _, valid = progs.start_one(keys, 0, margs.dynamic)
        if not bool(np.all(np.asarray(valid))):
            keys = keys if np.ndim(valid) else keys[None]
            start_keys = jax.vmap(lambda k: random.split(k)[0])(keys)  # start_point's keys (see one_chain)
            raise_if_no_valid_start(self._model, self._start_rule, start_keys, valid, margs, self._init_tries)

    def start_values(self, key, model_args=(), model_kwargs=None, chain_index=0):
        """The start of one chain (constrained values by site): traceable, for use inside ``jit``/``vmap``."""
        args, kwargs = tuple(model_args), dict(model_kwargs or {})
        plan = self._model.plan(*args, **kwargs)
        return start_point(self._model, plan, self._start_rule, key, chain_index, args, kwargs, self._init_tries)[0]

    # -- for subclasses ----------------------------------------------------------------------
    def _build_core(self, target, num_warmup):
        return None

    def _init_state_with(self, progs, values, key, args, kwargs):
        self._current = progs
        return self.init_state(values, key, args, kwargs)

    def init_state(self, values, key, model_args, model_kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, state, model_args, model_kwargs):  # pragma: no cover - abstract
        raise NotImplementedError
