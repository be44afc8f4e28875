"""Rules for primitives that move elements around without changing them.

Reshaping, transposing, reversing, squeezing and size-preserving broadcasts are
bijections (``log|det| = 0``). Splitting and joining (``concatenate``,
``stack``, ``split``) are solved when every piece on the unknown side is
unknown; a join with some pieces already known is left to the scheduler's
linear-block solver, since solving it alone would over-determine those pieces.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from . import DEFAULT_RULES
from ._base import Solution, Solver


def _zero(z):
    return 0.0  # a log|det| known to be zero: the schedule drops it


class _MapSolver(Solver):
    """Solve ``out = p(x)`` for ``x`` through a known inverse map, ``log|det| = 0``."""

    def __init__(self, inverse, description):
        self.inverse = inverse
        self.description = description

    def solve(self, ins, outs, theta):
        x = self.inverse(outs[0])
        return Solution([x] + list(ins[1:]), list(outs), _zero(outs[0]), None)


def _unary_map(make_inverse):
    def rule(pat):
        if len(pat.eqn.ins) < 1 or pat.known_in[0] or not pat.known_out[0]:
            return None
        if any(not k for k in pat.known_in[1:]):
            return None
        inv = make_inverse(pat)
        return None if inv is None else _MapSolver(inv, f"undo {pat.eqn.prim.name}")

    return rule


def _same_support(eqn, sup):
    return sup[0]


def _reshape_back(pat):
    shape = pat.eqn.ins[0].shape
    return lambda z: jnp.reshape(z, shape)


def _broadcast_back(pat):
    src = pat.eqn.ins[0]
    if src.size != pat.eqn.outs[0].size:
        return None  # a real broadcast: one value determines many, so it cannot be solved backward
    return lambda z: jnp.reshape(z, src.shape)


def _transpose_back(pat):
    inv = tuple(int(i) for i in np.argsort(pat.params["permutation"]))
    return lambda z: jnp.transpose(z, inv)


def _rev_back(pat):
    dims = tuple(pat.params["dimensions"])
    return lambda z: lax.rev(z, dims)


def _cumsum_back(pat):
    axis, reverse = pat.params["axis"], pat.params["reverse"]

    def inv(z):
        z = lax.rev(z, (axis,)) if reverse else z
        x = jnp.diff(z, axis=axis, prepend=jnp.zeros_like(lax.slice_in_dim(z, 0, 1, axis=axis)))
        return lax.rev(x, (axis,)) if reverse else x

    return inv


for _prim, _make in [
    (lax.reshape_p, _reshape_back),
    (lax.squeeze_p, _reshape_back),
    (lax.broadcast_in_dim_p, _broadcast_back),
    (lax.transpose_p, _transpose_back),
    (lax.rev_p, _rev_back),
    (lax.cumsum_p, _cumsum_back),
]:
    _r = _unary_map(_make)
    _r.image = _same_support if _prim is not lax.cumsum_p else None
    DEFAULT_RULES.register(_prim, _r)
if hasattr(lax, "expand_dims_p"):
    DEFAULT_RULES.register(lax.expand_dims_p, _unary_map(_reshape_back))


class _CumprodSolver(Solver):
    """``z = cumprod(x)`` for nonzero ``x``: ``x_i = z_i / z_{i-1}``."""

    def __init__(self, axis, reverse):
        self.axis, self.reverse = axis, reverse
        self.description = "undo cumprod"

    def solve(self, ins, outs, theta):
        z = outs[0]
        axis = self.axis
        z = lax.rev(z, (axis,)) if self.reverse else z
        prev = jnp.concatenate([jnp.ones_like(lax.slice_in_dim(z, 0, 1, axis=axis)),
                                lax.slice_in_dim(z, 0, z.shape[axis] - 1, axis=axis)], axis=axis)
        ok = jnp.all(prev != 0)
        prev = jnp.where(prev != 0, prev, 1)
        x = z / prev
        x = lax.rev(x, (axis,)) if self.reverse else x
        return Solution([x], [outs[0]], -jnp.sum(jnp.log(jnp.abs(prev))), ok)


def _cumprod_rule(pat):
    if pat.known_in[0] or not pat.known_out[0]:
        return None
    return _CumprodSolver(pat.params["axis"], pat.params["reverse"])


DEFAULT_RULES.register(lax.cumprod_p, _cumprod_rule)


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


# --- select_n with a constant predicate ----------------------------------------------------
class _PickSolver(Solver):
    def __init__(self, case):
        self.case = case
        self.description = f"a constant predicate picks case {case}"

    def solve(self, ins, outs, theta):
        new = list(ins)
        new[1 + self.case] = outs[0]
        return Solution(new, list(outs), _zero(outs[0]), None)


def _select_n_rule(pat):
    """``select_n(k, *cases)`` with ``k`` a constant that picks one case everywhere."""
    k = pat.const(0)
    if k is None or not pat.known_out[0]:
        return None
    k = np.asarray(k)
    if k.size == 0 or not np.all(k == k.flat[0]):
        return None
    case = int(k.flat[0])
    v = pat.eqn.ins[1 + case]
    if pat.known_in[1 + case] or v.shape != pat.eqn.outs[0].shape:
        return None
    return _PickSolver(case)


DEFAULT_RULES.register(lax.select_n_p, _select_n_rule)
