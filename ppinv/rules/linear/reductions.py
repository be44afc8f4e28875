"""Rules for reductions: ``Σ x`` and ``Π x`` over some axes (θ: all but one element of each group,
or a simplex point when the summands are positive) and ``max``/``min`` (which element attains it,
and the gaps of the others)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ...theta import ThetaSpec
from ..table import DEFAULT_RULES
from .._base import Solution, Solver, all_true


def move_axes_last(shape, axes):
    """Shape with ``axes`` moved to the end, and the number of elements they hold."""
    rest = tuple(d for i, d in enumerate(shape) if i not in axes)
    moved = rest + tuple(shape[a] for a in axes)
    return moved, int(np.prod([shape[a] for a in axes], dtype=np.int64))


def restore_axes(flat, shape, axes):
    """Inverse of flattening ``axes`` of an array of ``shape`` into the last axis."""
    moved, _ = move_axes_last(shape, axes)
    x = jnp.reshape(flat, moved)
    nd = len(shape)
    return jnp.moveaxis(x, tuple(range(nd - len(axes), nd)), axes)


def _is_positive(sup):
    return sup is constraints.positive or (
        isinstance(sup, constraints.greater_than) and _bound_ge_zero(sup)
    )


def _bound_ge_zero(sup):
    try:
        return float(sup.lower_bound) >= 0
    except Exception:
        return False


# --- reduce_sum ---------------------------------------------------------------------
class _SumSolver(Solver):
    def __init__(self, pat, simplex):
        x = pat.eqn.ins[0]
        self.axes = tuple(pat.params["axes"])
        self.in_shape = x.shape
        self.simplex = simplex
        moved_shape, self.n = move_axes_last(x.shape, self.axes)
        self.batch_shape = moved_shape[: len(moved_shape) - len(self.axes)]
        if simplex:
            spec_shape = self.batch_shape + (self.n,)
            spec = ThetaSpec(spec_shape, x.dtype, constraints.simplex, "simplex", pat.eqn.describe())
        else:
            support = pat.in_support[0] if pat.in_support[0] is not None else constraints.real
            spec = ThetaSpec(self.batch_shape + (self.n - 1,), x.dtype,
                             _elementwise(support), "value", pat.eqn.describe())
        self.theta = (spec,)
        self.description = "split a sum: " + ("simplex θ (positive summands)" if simplex else "all but one summand from θ")

    def solve(self, ins, outs, theta):
        z = outs[0]
        (t,) = theta
        if self.simplex:
            flat = z[..., None] * t
            ok = z > 0
            ld = (self.n - 1) * jnp.log(jnp.where(ok, z, 1.0))
        else:
            last = z - jnp.sum(t, axis=-1)
            flat = jnp.concatenate([t, last[..., None]], axis=-1)
            ok, ld = None, jnp.zeros((), z.dtype)
        x = restore_axes(flat, self.in_shape, self.axes)
        return Solution([x], [z], jnp.sum(ld), all_true(ok))

    def pgf(self, ins, outs):
        flat = _flatten_groups(ins[0], self.axes)
        if self.simplex:
            return (flat / jnp.sum(flat, axis=-1, keepdims=True),)
        return (flat[..., :-1],)


def _elementwise(support):
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def _flatten_groups(x, axes):
    moved = jnp.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    return moved.reshape(moved.shape[: x.ndim - len(axes)] + (-1,))


class _SingleSolver(Solver):
    """A reduction over groups of one element: a reshape."""

    def __init__(self, shape):
        self.shape = shape
        self.description = "undo a reduction over a single element"

    def solve(self, ins, outs, theta):
        return Solution([jnp.reshape(outs[0], self.shape)], list(outs), jnp.zeros((), outs[0].dtype), None)


def _reduction_rule(solver):
    """The rule of a reduction with a known output: a single element is the output itself; more
    take θ (``solver(pat)``), only once the scheduler is stuck and the operand has no other use."""

    def rule(pat):
        if pat.known_in[0] or not pat.known_out[0]:
            return None
        x = pat.eqn.ins[0]
        _, n = move_axes_last(x.shape, tuple(pat.params["axes"]))
        if n == 1:
            return _SingleSolver(x.shape)
        if not (pat.allow_theta and pat.exclusive[0]):
            return None
        return solver(pat)

    return rule


_reduce_sum_rule = _reduction_rule(lambda pat: _SumSolver(pat, simplex=_is_positive(_elementwise(pat.in_support[0]))))


def _sum_image(eqn, sup):
    return constraints.positive if _is_positive(_elementwise(sup[0])) else None


_reduce_sum_rule.image = _sum_image
DEFAULT_RULES.register(lax.reduce_sum_p, _reduce_sum_rule)


# --- reduce_prod --------------------------------------------------------------------
class _ProdSolver(Solver):
    def __init__(self, pat):
        x = pat.eqn.ins[0]
        self.axes = tuple(pat.params["axes"])
        self.in_shape = x.shape
        moved_shape, self.n = move_axes_last(x.shape, self.axes)
        batch = moved_shape[: len(moved_shape) - len(self.axes)]
        support = _elementwise(pat.in_support[0]) if pat.in_support[0] is not None else constraints.real
        self.theta = (ThetaSpec(batch + (self.n - 1,), x.dtype, support, "value", pat.eqn.describe()),)
        self.description = "split a product: all but one factor from θ"

    def solve(self, ins, outs, theta):
        z = outs[0]
        (t,) = theta
        p = jnp.prod(t, axis=-1)
        ok = p != 0
        ps = jnp.where(ok, p, 1.0)
        flat = jnp.concatenate([t, (z / ps)[..., None]], axis=-1)
        x = restore_axes(flat, self.in_shape, self.axes)
        return Solution([x], [z], -jnp.sum(jnp.log(jnp.abs(ps))), all_true(ok))

    def pgf(self, ins, outs):
        return (_flatten_groups(ins[0], self.axes)[..., :-1],)


_reduce_prod_rule = _reduction_rule(_ProdSolver)


DEFAULT_RULES.register(lax.reduce_prod_p, _reduce_prod_rule)


# --- reduce_max / reduce_min: which element attains it, and the gaps of the others ----------
class _ArgExtremeSolver(Solver):
    """``z = max(x)`` per group: θ picks the arg-max ``k`` and the (positive) gaps ``z − x_i``."""

    def __init__(self, pat, sign):
        x = pat.eqn.ins[0]
        self.axes = tuple(pat.params["axes"])
        self.in_shape = x.shape
        self.sign = sign  # +1 for max (others below), -1 for min (others above)
        moved, self.n = move_axes_last(x.shape, self.axes)
        batch = moved[: len(moved) - len(self.axes)]
        from ...theta import int_dtype

        self.theta = (
            ThetaSpec(batch, np.dtype(int_dtype()), constraints.integer_interval(0, self.n - 1), "argmax", pat.eqn.describe()),
            ThetaSpec(batch + (self.n - 1,), x.dtype, constraints.positive, "gap", pat.eqn.describe()),
        )
        self.description = f"reduce_{'max' if sign > 0 else 'min'}: θ picks the extreme element and the gaps"

    def solve(self, ins, outs, theta):
        z = outs[0]
        k, gaps = theta
        # positions other than k take the gaps in order
        idx = jnp.broadcast_to(jnp.arange(self.n), gaps.shape[:-1] + (self.n,))
        slot = jnp.where(idx < k[..., None], idx, idx - 1)  # gap index for each position
        g = jnp.take_along_axis(gaps, jnp.clip(slot, 0, self.n - 2), axis=-1)
        flat = jnp.where(idx == k[..., None], z[..., None], z[..., None] - self.sign * g)
        x = restore_axes(flat, self.in_shape, self.axes)
        ok = jnp.all(gaps > 0) & jnp.all((k >= 0) & (k < self.n))
        return Solution([x], [z], jnp.zeros((), z.dtype), ok)

    def pgf(self, ins, outs):
        flat = _flatten_groups(ins[0], self.axes)
        k = jnp.argmax(self.sign * flat, axis=-1)
        z = jnp.take_along_axis(flat, k[..., None], axis=-1)
        gaps_all = self.sign * (z - flat)
        idx = jnp.broadcast_to(jnp.arange(self.n), flat.shape)
        # indices of the non-extreme positions, in order (k moved to the end by a stable sort)
        order = jnp.argsort(idx == k[..., None], axis=-1, stable=True)[..., : self.n - 1]
        return k.astype(self.theta[0].dtype), jnp.take_along_axis(gaps_all, order, axis=-1)


def _extreme_rule(sign):
    return _reduction_rule(lambda pat: _ArgExtremeSolver(pat, sign))


DEFAULT_RULES.register(lax.reduce_max_p, _extreme_rule(+1))
DEFAULT_RULES.register(lax.reduce_min_p, _extreme_rule(-1))
