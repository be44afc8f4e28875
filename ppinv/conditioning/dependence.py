"""Observations that depend on each other, named by site (the scheduler sees only variables)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from .._compat import is_concrete
from ..errors import ConditionError
from .sites import _known


def _raise_if_dependent(closed, plan, upstream, ctx):
    """Raise a ConditionError naming the observed sites that depend on the others, if any.

    Evaluated at a draw from the prior: the rows of the Jacobian of the observed values
    with respect to the latents are added site by site; a site whose rows do not raise
    the rank is (partly) determined by the sites before it. A generic point has the
    generic rank, so this only misfires on a measure-zero set of draws.
    """
    if any(not is_concrete(c) for c in ctx) or not all(_known(v) for v in plan.sample_data.values()):
        return  # traced model arguments or data: no point to evaluate at
    try:
        full = plan._full_ctx(ctx)
        model = handlers.condition(plan.cm.model, data=plan.sample_data)
        args, kwargs = plan.rebuild_args(ctx)
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        x0 = [plan.sites[n].to_input(jnp.asarray(tr[n]["value"], plan.sites[n].dtype)) for n in plan.latents]
        fun = jax.extend.core.jaxpr_as_fun(closed)
        sizes = [int(np.prod(plan.sites[n].input_shape, dtype=np.int64)) for n in plan.latents]
        flat0 = jnp.concatenate([jnp.ravel(x) for x in x0]) if x0 else jnp.zeros((0,))

        def f(flat):
            xs, off = [], 0
            for n, k in zip(plan.latents, sizes):
                xs.append(flat[off : off + k].reshape(plan.sites[n].input_shape))
                off += k
            return [jnp.ravel(o) for o in fun(*xs, *full)]

        jac = [np.asarray(j) for j in jax.jacfwd(f)(flat0)]
    except Exception:  # a diagnosis only: the scheduler's own error follows
        return
    rows = np.zeros((0, flat0.size))
    rank = 0
    for i, (n, j) in enumerate(zip(plan.exact, jac)):
        rows = np.concatenate([rows, j.reshape(-1, flat0.size)])
        new = int(np.linalg.matrix_rank(rows)) if rows.size else 0
        if new < rank + j.shape[0]:
            before = plan.exact[:i]
            if before:
                what = f"is (partly) determined by the observed site(s) {', '.join(repr(b) for b in before)}"
            else:
                what = "has components that are determined by its other components"
            raise ConditionError(
                f"observed site '{n}' {what}: the observations are redundant, or contradict each other if "
                f"their values disagree (the Jacobian of the observed values with respect to the latents "
                f"{', '.join(repr(u) for u in upstream)} has rank {new} < {rows.shape[0]}). Observe only "
                f"sites (and components) that are independent of each other: drop '{n}' from the data "
                "(or its obs=), or observe it with noise as an ordinary sample site."
            )
        rank = new
