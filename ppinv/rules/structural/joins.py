"""Joins and splits (``concatenate``, ``stack``, ``split``, ``unstack``), solved when every piece on
the unknown side is unknown; a join with some pieces known is left to the linear-block solver."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..table import DEFAULT_RULES
from .._base import Solution, Solver
from .common import _zero


# --- joins and splits -------------------------------------------------------------
class _SplitSolver(Solver):
    """``z = join(x_1, ..., x_k)`` with every ``x_i`` unknown: cut ``z`` back into pieces."""

    def __init__(self, cut, description):
        self.cut = cut
        self.description = description

    def solve(self, ins, outs, theta):
        return Solution(list(self.cut(outs[0])), list(outs), _zero(outs[0]), None)


def _distinct_unknown_inputs(pat):
    vs = pat.eqn.ins
    return not any(pat.known_in) and len({id(v) for v in vs}) == len(vs)


def _concatenate_rule(pat):
    if not pat.known_out[0] or not _distinct_unknown_inputs(pat):
        return None
    dim = pat.params["dimension"]
    bounds = np.cumsum([v.shape[dim] for v in pat.eqn.ins])[:-1]

    def cut(z):
        return jnp.split(z, bounds, axis=dim)

    return _SplitSolver(cut, "split a concatenation")


def _stack_rule(pat):
    if not pat.known_out[0] or not _distinct_unknown_inputs(pat):
        return None
    axis = pat.params["axis"]
    n = len(pat.eqn.ins)

    def cut(z):
        return [jnp.take(z, i, axis=axis) for i in range(n)]

    return _SplitSolver(cut, "unstack")


def _join_image(eqn, sup):
    return sup[0] if all(s is sup[0] for s in sup) else None


_concatenate_rule.image = _join_image
_stack_rule.image = _join_image
DEFAULT_RULES.register(lax.concatenate_p, _concatenate_rule)
if hasattr(lax, "stack_p"):
    DEFAULT_RULES.register(lax.stack_p, _stack_rule)


class _JoinSolver(Solver):
    """``(z_1, ..., z_k) = split(x)`` with every piece known: join them back."""

    def __init__(self, join, description):
        self.join = join
        self.description = description

    def solve(self, ins, outs, theta):
        return Solution([self.join(outs)], list(outs), _zero(outs[0]), None)


def _split_rule(pat):
    if pat.known_in[0] or not all(pat.known_out):
        return None
    axis = pat.params["axis"]
    return _JoinSolver(lambda zs: jnp.concatenate(zs, axis=axis), "join split pieces")


def _unstack_rule(pat):
    if pat.known_in[0] or not all(pat.known_out):
        return None
    axis = pat.params["axis"]
    return _JoinSolver(lambda zs: jnp.stack(zs, axis=axis), "restack")


if hasattr(lax, "split_p"):
    DEFAULT_RULES.register(lax.split_p, _split_rule)
if hasattr(lax, "unstack_p"):
    DEFAULT_RULES.register(lax.unstack_p, _unstack_rule)
