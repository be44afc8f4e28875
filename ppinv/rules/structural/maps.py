"""Bijections that move elements without changing them: reshape, squeeze, size-preserving
broadcasts, transpose, rev (``log|det| = 0``), and the cumulative sums and products."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..table import DEFAULT_RULES
from .._base import Solution, Solver
from .common import _zero


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
