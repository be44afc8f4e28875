"""Shares of a total: ``x / Σx`` observed on all but one entry, the total as θ.

Proportions of unknown amounts — relative abundances, mixture weights from Gamma
draws (a Dirichlet), compositions — are ``c = x / s`` with ``s = Σ x``. They sum to
one, so one share follows from the others and ``K − 1`` of them are what can be
observed (``(x / x.sum())[:-1]``). No relation can be solved alone: the division
has two unknowns and the sum is known nowhere. The total is exactly the
coordinate the observation leaves free, so it becomes θ:

    c_m = 1 − Σ_{i≠m} c_i   (the unobserved share),   x = s · c,

a bijection from (observed shares, s) onto the amounts with ``Σx = s ≠ 0``, with

    log|det ∂x/∂(c_{−m}, s)| = (K − 1) · log|s|.

θ's support is the positive half-line when the amounts are positive (their support
has a non-negative lower bound), else the reals; the amounts' supports are checked
after the solve (each share must then be positive).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from numpyro.distributions import constraints

from ..theta import ThetaSpec, is_constrained
from .base import Strategy, block_solve
from .cones import nonnegative, observed_range, pending_definer, through_broadcast


class SharesOfATotal(Strategy):
    name = "shares"

    def candidates(self, state):
        for anchor in state.stalled():
            found = _shares(state, anchor)
            if found is None:
                continue
            amounts, missing = found
            block = SharesBlock(anchor, amounts, missing, state.supports.get(amounts), state.names)
            yield block_solve(block, hints=("total",))


def _shares(state, anchor):
    """``(x, missing index)`` when ``anchor`` observes all shares of ``c = x / Σx`` but one."""
    observed = observed_range(state, anchor)
    if observed is None or observed[2] - observed[1] != observed[0].shape[0] - 1:
        return None
    c, start, _ = observed
    division = pending_definer(state, c, lax.div_p)
    if division is None:
        return None
    x, total = division.ins[0], through_broadcast(state, division.ins[1])
    summation = pending_definer(state, total, lax.reduce_sum_p)
    if state.is_known(x) or x.shape != c.shape or summation is None:
        return None
    if summation.ins[0] is not x or tuple(summation.params["axes"]) != (0,):
        return None
    if any(e not in (division, summation) for e in state.users.get(c, ()) if e is not anchor and e in state.pending):
        return None  # the shares are used elsewhere too: solving them here would not be exclusive
    return x, (c.shape[0] - 1 if start == 0 else 0)


class SharesBlock:
    """The amounts from all shares but one and their total (see the module)."""

    known_inputs = ()

    def __init__(self, anchor, amounts, missing, support, names):
        self.anchors, self.leaves = [anchor], [amounts]
        self.missing, self.support = missing, support
        self.size = amounts.shape[0]
        positive = nonnegative(support)
        name = names.get(amounts, repr(amounts))
        self.theta = (ThetaSpec((), amounts.dtype, constraints.positive if positive else constraints.real, "value",
                                f"total of {name}"),)
        self.description = f"shares of a total: {name} from {self.size - 1} of its {self.size} shares and Σ{name} (θ)"

    def solve(self, known_env, observed, theta):
        (shares,) = observed
        (total,) = theta
        rest = 1.0 - jnp.sum(shares)
        full = jnp.concatenate([shares, rest[None]]) if self.missing else jnp.concatenate([rest[None], shares])
        x = full * total
        flags = [total != 0]
        if is_constrained(self.support):
            flags.append(jnp.all(self.support.check(x)))
        log_det = (self.size - 1) * jnp.log(jnp.abs(total))
        return [x], log_det, jnp.all(jnp.stack(flags))

    def pgf(self, known_env, leaves):
        (x,) = leaves
        return (jnp.sum(x),)
