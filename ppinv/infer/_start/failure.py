"""No valid start: why every try failed (the observation outside the range, or outside the
supports, or of zero density), worked out on the failure path only (:func:`raise_if_no_valid_start`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...errors import ConditionError
from .tries import _why_invalid


def raise_if_no_valid_start(cm, rule, keys, valid, margs, num_tries):
    """Raise the no-valid-start error if ``valid`` (concrete; one entry per chain) says so.

    ``keys`` holds the start key (``start_point``'s) of each chain. Why the tries
    failed is worked out here, in a program compiled only on this failure path.
    """
    valid = np.asarray(valid).reshape(-1)
    if valid.all():
        return
    key = keys[int(np.argmin(valid))]
    args, kwargs = margs.rebuild(margs.dynamic)
    plan = cm.plan(*args, **kwargs)

    def why(key, dynamic):
        a, kw = margs.rebuild(dynamic)
        p = cm.plan(*a, **kw)
        keys = jax.random.split(key, num_tries)
        ok, in_support = jax.lax.map(lambda k: _why_invalid(cm, p, rule, k, a, kw), keys)
        return jnp.any(ok), jnp.any(in_support)

    inv_ok, in_support = jax.jit(why)(key, margs.dynamic)
    raise_no_valid_start(plan, args, kwargs, num_tries, bool(inv_ok), bool(in_support), rule)


def _fmt(v):
    v = np.asarray(v)
    return repr(v.item()) if v.ndim == 0 else np.array2string(v, threshold=8)


def raise_no_valid_start(plan, args, kwargs, num_tries, some_inverse_ok, some_in_support, rule=None):
    y = plan.observed_values(plan.ctx_of(args, kwargs))
    obs = ", ".join(f"'{n}' = {_fmt(v)}" for n, v in zip(plan.exact, y))
    sites = ", ".join(repr(n) for n in plan.exact)
    lat = ", ".join(repr(n) for n in plan.upstream)
    draws = f"{num_tries} " + ("prior draws" if rule is None or rule.strategy is None else "initial points")
    if not some_in_support:
        why = (
            f"the observed value ({obs}) is outside the range of {sites} given the supports of the latents "
            f"({lat}): solving for them puts a latent outside its support at every one of {draws} "
            "(e.g. a sum of positive latents observed at a negative value)"
        )
    elif not some_inverse_ok:
        why = (
            f"the observed value ({obs}) is outside the range of the map from the latents ({lat}) to {sites}: "
            f"the inverse is undefined there for every one of {draws} (e.g. exp(a) observed "
            "at a negative value, a*a at a negative value, sin(a) outside [-1, 1])"
        )
    else:
        why = (
            f"at the observation ({obs}), every one of {draws} mapped through the inverse has "
            "zero density under the model (the observed value may be outside the range of what the prior "
            "allows, or the observations contradict each other)"
        )
    hint = ""
    if rule is not None and rule.strategy is not None:
        hint = (
            f" The starts came from init_strategy={rule.description}; its values (or the θ they give) may "
            "be invalid: try the default init_strategy (prior draws)."
        )
    raise ConditionError(
        f"no valid starting point: {why}. Check the observed value(s) in the data; if they are right and "
        f"valid points are merely rare, raise init_tries or pass init_params.{hint}"
    )
