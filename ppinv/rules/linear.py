"""Rules for reductions and linear maps whose inverse needs a continuous θ.

* ``z = Σ x`` over some axes: θ holds all but one element of each reduced
  group (the last is ``z − Σθ``). When the summands are positive, θ is instead
  a point of the simplex per group (``x = z · θ``), so that every solved value
  stays positive: the posterior of a sum of Gamma variables is then a
  Dirichlet in θ and mixes fast.
* ``z = Π x`` over some axes: as for sums, on the multiplicative group.
* ``y = A x`` (``dot_general`` with one operand known, ``A`` m×n of rank m):
  for a constant ``A``, ``x = A⁺ y + N θ`` with ``N`` an orthonormal basis of
  the null space (decomposed once); for an ``A`` known only at run time (a
  model argument, or computed from other unknowns) a parametrisation whose
  derivatives are exact too: pivots chosen per call when ``A`` is the same at
  every θ, a null space projected from a fixed basis when it moves with θ
  (see ``MatrixSolve`` in ``_block.py``).

These rules consume θ only when the scheduler is stuck and the unknown operand
has no other pending use (``pattern.exclusive``); otherwise the operand is
determined elsewhere and a θ here would over-determine it.

The module also fills the ``linearity`` slot of every primitive that joint
linear solves (``_block.py``) may go through: copies and rearrangements, sums
and differences, placements at known indices, and products and quotients with
known factors.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._block import KnownStructure, MatrixSolve, const_has_zero
from .._compat import is_concrete
from ..theta import ThetaSpec
from . import DEFAULT_RULES, deflinear
from ._base import Solution, Solver, all_true


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


def _reduce_sum_rule(pat):
    if pat.known_in[0] or not pat.known_out[0]:
        return None
    x = pat.eqn.ins[0]
    _, n = move_axes_last(x.shape, tuple(pat.params["axes"]))
    if n == 1:
        return _SingleSolver(x.shape)
    if not (pat.allow_theta and pat.exclusive[0]):
        return None
    return _SumSolver(pat, simplex=_is_positive(_elementwise(pat.in_support[0])))


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


def _reduce_prod_rule(pat):
    if pat.known_in[0] or not pat.known_out[0]:
        return None
    x = pat.eqn.ins[0]
    _, n = move_axes_last(x.shape, tuple(pat.params["axes"]))
    if n == 1:
        return _SingleSolver(x.shape)
    if not (pat.allow_theta and pat.exclusive[0]):
        return None
    return _ProdSolver(pat)


DEFAULT_RULES.register(lax.reduce_prod_p, _reduce_prod_rule)


# --- dot_general with a known operand -----------------------------------------------
class _DotLayout:
    """``y = K·u`` in canonical layouts: ``K`` (batch, m, n), ``u`` (batch, n, k), ``y`` (batch, m, k)."""

    def __init__(self, eqn, unknown):
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        self.unknown = unknown
        known_v, unknown_v = eqn.ins[1 - unknown], eqn.ins[unknown]
        kc, uc = (lc, rc) if unknown == 1 else (rc, lc)
        kb, ub = (lb, rb) if unknown == 1 else (rb, lb)
        kc, uc, kb, ub = map(tuple, (kc, uc, kb, ub))
        kfree = tuple(d for d in range(len(known_v.shape)) if d not in kc + kb)
        ufree = tuple(d for d in range(len(unknown_v.shape)) if d not in uc + ub)
        self.k_perm = kb + kfree + kc
        self.u_perm = ub + uc + ufree
        self.batch = tuple(known_v.shape[d] for d in kb)
        self.m = int(np.prod([known_v.shape[d] for d in kfree], dtype=np.int64))
        self.n = int(np.prod([known_v.shape[d] for d in kc], dtype=np.int64))
        self.kcols = int(np.prod([unknown_v.shape[d] for d in ufree], dtype=np.int64))
        self.u_shape = unknown_v.shape
        nb, nkf, nuf = len(kb), len(kfree), len(ufree)
        # dot_general output layout: (batch, lhs free, rhs free)
        if unknown == 1:  # y = K u: (batch, kfree, ufree)
            self.y_perm = tuple(range(nb + nkf + nuf))
        else:  # y = u K: (batch, ufree, kfree) -> (batch, kfree, ufree)
            self.y_perm = tuple(range(nb)) + tuple(range(nb + nuf, nb + nuf + nkf)) + tuple(range(nb, nb + nuf))
        self.null = self.n - self.m
        # a matrix-vector product has no free columns: θ is (batch..., null), not (batch..., 1, null)
        self.vector = not ufree

    def k(self, k):
        # a value known now stays a NumPy array, so its factorisation happens once, at trace time
        xp = np if is_concrete(k) else jnp
        return xp.reshape(xp.transpose(xp.asarray(k), self.k_perm), self.batch + (self.m, self.n))

    def y(self, y):
        return jnp.transpose(y, self.y_perm).reshape(self.batch + (self.m, self.kcols))

    def u(self, u):
        return jnp.transpose(u, self.u_perm).reshape(self.batch + (self.n, self.kcols))

    def restore_u(self, u):
        shaped = u.reshape(tuple(self.u_shape[d] for d in self.u_perm))
        return jnp.transpose(shaped, tuple(int(i) for i in np.argsort(self.u_perm)))


class _DotSolver(Solver):
    """``y = K·u`` solved for ``u`` per batch and free column (see ``MatrixSolve`` in ``_block.py``):
    an SVD when ``K`` is a constant, a pivot solve with exact derivatives when it is known at run time."""

    def __init__(self, pat, layout):
        eqn = pat.eqn
        self.layout = lay = layout
        self.unknown = lay.unknown
        known_v, unknown_v = eqn.ins[1 - lay.unknown], eqn.ins[lay.unknown]
        self.theta = ()
        if lay.null > 0:
            shape = lay.batch + (() if lay.vector else (lay.kcols,)) + (lay.null,)
            self.theta = (ThetaSpec(shape, unknown_v.dtype, constraints.real, "null_space", eqn.describe()),)
        structure = pat.structure if pat.structure is not None else KnownStructure()
        constant = pat.const(1 - lay.unknown)
        common = dict(rank_message=self._rank_message)
        if constant is not None:
            self.matrix = MatrixSolve(lay.batch, lay.m, lay.n, constant=lay.k(np.asarray(constant)), **common)
        else:
            adaptive = not structure.moves_with_theta(known_v)
            generic = structure.generic(known_v)
            typical = structure.typical(known_v) if lay.null and not adaptive else None  # the chart's point
            self.matrix = MatrixSolve(
                lay.batch, lay.m, lay.n,
                generic=None if generic is None else lay.k(np.asarray(generic)),
                typical=None if typical is None else lay.k(np.asarray(typical)),
                adaptive=adaptive,
                **common,
            )
        self.description = (
            f"solve a linear map ({lay.m}×{lay.n})" + (f" with a {lay.null}-dim null space" if lay.null else "")
            + f"; {self.matrix.kind}"
        )

    def _rank_message(self, rank):
        m, n = self.layout.m, self.layout.n
        return (
            f"rank-deficient linear map: the known {m}×{n} matrix has rank {rank} < {m}, so its image "
            "does not cover the observations. Remove redundant observed rows or observe fewer combinations."
        )

    def _k(self, ins):
        return None if self.matrix.svd is not None else self.layout.k(ins[1 - self.unknown])

    def solve(self, ins, outs, theta):
        lay = self.layout
        y = lay.y(outs[0])
        free = None
        if lay.null:
            (t,) = theta  # (batch, k, null), or (batch, null) for a vector
            t = t[..., None, :] if lay.vector else t
            free = jnp.swapaxes(t, -1, -2).astype(y.dtype)
        u, log_det, ok = self.matrix.solve(self._k(ins), y, free)  # u: (batch, n, k)
        new_ins = list(ins)
        new_ins[self.unknown] = lay.restore_u(u)
        total = jnp.sum(jnp.asarray(log_det, y.dtype)) * lay.kcols
        return Solution(new_ins, list(outs), total, ok)

    def pgf(self, ins, outs):
        lay = self.layout
        if not lay.null:
            return ()
        u = lay.u(ins[self.unknown])
        t = jnp.swapaxes(self.matrix.free_coords(self._k(ins), u), -1, -2)  # (batch, k, null)
        return (t[..., 0, :] if lay.vector else t,)


def _dot_general_rule(pat):
    if not pat.known_out[0] or pat.known_in[0] == pat.known_in[1] or pat.same(0, 1):
        return None
    unknown = 0 if not pat.known_in[0] else 1
    layout = _DotLayout(pat.eqn, unknown)
    if layout.m > layout.n:
        return None  # more equations than unknowns: over-determined on its own
    if layout.null and not (pat.allow_theta and pat.exclusive[unknown]):
        return None
    return _DotSolver(pat, layout)


DEFAULT_RULES.register(lax.dot_general_p, _dot_general_rule)


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
        from ..theta import int_dtype

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
    def rule(pat):
        if pat.known_in[0] or not pat.known_out[0]:
            return None
        x = pat.eqn.ins[0]
        _, n = move_axes_last(x.shape, tuple(pat.params["axes"]))
        if n == 1:
            return _SingleSolver(x.shape)
        if not (pat.allow_theta and pat.exclusive[0]):
            return None
        return _ArgExtremeSolver(pat, sign)

    return rule


DEFAULT_RULES.register(lax.reduce_max_p, _extreme_rule(+1))
DEFAULT_RULES.register(lax.reduce_min_p, _extreme_rule(-1))


# --- linearity slots ------------------------------------------------------------------------
def _no_zero_factor(eqn, known):
    return not any(const_has_zero(v) for v in eqn.ins)  # a zero factor determines nothing


def _nonzero_divisor(eqn, known):
    return not const_has_zero(eqn.ins[1])


def _first_power(eqn, known):
    return eqn.params["y"] == 1


_AFFINE = [
    "add_p", "sub_p", "neg_p", "reduce_sum_p", "broadcast_in_dim_p", "reshape_p", "squeeze_p",
    "transpose_p", "rev_p", "concatenate_p", "slice_p", "pad_p", "cumsum_p", "convert_element_type_p",
    "copy_p", "stack_p", "split_p", "unstack_p", "expand_dims_p",
    # placements: affine in the floating operands once the indices are known
    "dynamic_slice_p", "gather_p", "dynamic_update_slice_p", "scatter_p", "scatter_add_p",
]
for _name in _AFFINE:
    if hasattr(lax, _name):  # some exist on some JAX releases only
        deflinear(getattr(lax, _name), table=DEFAULT_RULES)
deflinear(lax.mul_p, multilinear=True, when=_no_zero_factor, table=DEFAULT_RULES)
deflinear(lax.dot_general_p, multilinear=True, table=DEFAULT_RULES)
deflinear(lax.div_p, operands=(0,), when=_nonzero_divisor, table=DEFAULT_RULES)
deflinear(lax.integer_pow_p, when=_first_power, table=DEFAULT_RULES)
