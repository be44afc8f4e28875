"""A valid point of a conditioned model for users and scripts: the best of many PGF starts, one
compiled start program per model and argument signature (:func:`pgf_initial_values`)."""

from __future__ import annotations

import weakref

import jax

from ..._compat import is_concrete
from .._args import ModelArgs
from .failure import raise_if_no_valid_start
from .rule import StartRule
from .tries import start_point

# is called eagerly by users and experiment scripts; a fresh jit per call would recompile)
_COMPILED = weakref.WeakKeyDictionary()


def _compiled_start(cm, margs: ModelArgs, num_tries):
    try:
        per_model = _COMPILED.setdefault(cm, {})
    except TypeError:  # an unhashable model object: no cache
        per_model = {}
    key = (margs.signature, num_tries)
    fn = per_model.get(key)
    if fn is None:

        def ppinv_pgf_start(rng_key, chain_index, dynamic):
            args, kwargs = margs.rebuild(dynamic)
            plan = cm.plan(*args, **kwargs)
            return start_point(cm, plan, StartRule(), rng_key, chain_index, args, kwargs, num_tries)

        fn = per_model[key] = jax.jit(ppinv_pgf_start)
    return fn


def pgf_initial_values(cm, rng_key, args=(), kwargs=None, num_tries=64, check=True, chain_index=0):
    """A valid point of the conditioned model: the best of ``num_tries`` PGF starts.

    Each try draws ``x`` from the model's prior and sets ``θ = pgf(x)``;
    ``g(y_obs, θ)`` is then a point on the constraint set whenever ``(y_obs, θ)``
    is inside the domain. The try of highest log density under the conditioned
    model is returned (constrained values by site name); with discrete θ,
    ``chain_index`` picks the branch (see :func:`pick_start`). The tries are
    made from ``jax.random.split(rng_key, num_tries)``. With ``check=False`` no
    error is raised when no try is valid (for use inside ``vmap`` over data sets).
    """
    kwargs = dict(kwargs or {})
    args = tuple(args)
    margs = ModelArgs(args, kwargs)
    fn = _compiled_start(cm, margs, num_tries)
    concrete_args = all(is_concrete(d) for d in margs.dynamic)
    if check and not is_concrete(rng_key) and concrete_args:
        # Traced key (MCMC's chain_method="parallel" initialises inside pmap): the draws
        # below cannot be inspected, so check once with a concrete key that a valid point
        # exists at all, to fail here with the reason instead of running chains at −∞.
        with jax.ensure_compile_time_eval():
            key0 = jax.random.PRNGKey(0)
            raise_if_no_valid_start(cm, StartRule(), key0[None], fn(key0, 0, margs.dynamic)[2], margs, num_tries)
    pick, _, valid = fn(rng_key, chain_index, margs.dynamic)
    if check and is_concrete(valid) and concrete_args:
        raise_if_no_valid_start(cm, StartRule(), rng_key[None], valid, margs, num_tries)
    return pick
