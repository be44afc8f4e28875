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

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._block import KnownStructure, MatrixSolve, const_has_zero
from .._compat import is_concrete
from ..theta import ThetaSpec
from .table import DEFAULT_RULES, deflinear
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


# --- linear solves with a known matrix: x = A⁻¹ b solved for b --------------------------------------
# ``triangular_solve``, ``custom_linear_solve`` (what ``jnp.linalg.solve``, ``jax.scipy.linalg.solve``
# and ``cho_solve`` emit) and the like compute ``x`` with ``A x = b``. With ``A`` known and ``x``
# known, ``b`` is the known linear map run forward: ``b = A x``, exact, with no solve at all. The
# local log|det| is that of the map x ↦ b, ``log|det A|`` per right-hand side.
class _ForwardMapSolver(Solver):
    """``x = A⁻¹ b`` solved for ``b``: ``b = apply(known, x)``.

    ``apply(ins, x) -> b`` runs the linear map; ``log_det(ins) -> (log|det ∂b/∂x|, ok)`` is its
    density term, computed once when every known operand is concrete (``constant_log_det``).
    """

    def __init__(self, rhs, apply, log_det, constant_log_det=None, description=""):
        self.rhs, self.apply, self.log_det = list(rhs), apply, log_det
        self.constant_log_det = constant_log_det
        self.description = description

    def solve(self, ins, outs, theta):
        bs = self.apply(ins, list(outs))
        new_ins = list(ins)
        for k, b in zip(self.rhs, bs):
            new_ins[k] = b
        if self.constant_log_det is not None:
            return Solution(new_ins, list(outs), self.constant_log_det, None)
        log_det, ok = self.log_det(ins)
        return Solution(new_ins, list(outs), log_det, all_true(ok))


def _singular(what, eqn):
    from ..errors import InversionError

    return InversionError(
        f"{what} with a known singular matrix: x = A⁻¹ b is not defined, so the relation has no inverse:"
        f"\n    {eqn.describe()}\nCheck the matrix (a zero pivot, a repeated row)."
    )


def _concrete_log_det(log_det, ins, what, eqn):
    """``log_det(ins)`` now, as a float, when every operand it reads is concrete; else ``None``."""
    if not all(v is None or is_concrete(v) for v in ins):
        return None
    with jax.ensure_compile_time_eval():
        value, ok = log_det(ins)
    value = float(np.asarray(value))
    if not np.isfinite(value) or (ok is not None and not bool(np.all(np.asarray(ok)))):
        raise _singular(what, eqn)
    return value


# -- triangular_solve: op(A) x = b (left side) or x op(A) = b, A triangular ---------------------
def _triangle(a, lower, unit_diagonal):
    """The part of ``a`` triangular_solve reads: one triangle, and a unit diagonal if so declared."""
    tri = jnp.tril(a) if lower else jnp.triu(a)
    if unit_diagonal:
        eye = jnp.eye(a.shape[-1], dtype=bool)
        tri = jnp.where(eye, jnp.ones((), a.dtype), tri)
    return tri


def _triangular_rule(pat):
    eqn, p = pat.eqn, pat.params
    if not (pat.known_in[0] and not pat.known_in[1] and pat.known_out[0]):
        return None
    a, b = eqn.ins
    if not (a.is_float and b.is_float) or jnp.issubdtype(a.dtype, jnp.complexfloating):
        return None
    left, lower, transpose = p["left_side"], p["lower"], p["transpose_a"]
    unit = p["unit_diagonal"]
    # right-hand sides: the columns of b (left side) or its rows (right side), per batch entry
    per_rhs = b.shape[-1] if left else b.shape[-2]
    batch = int(np.prod(b.shape[:-2], dtype=np.int64)) // max(int(np.prod(a.shape[:-2], dtype=np.int64)), 1)

    def apply(ins, outs):
        op = _triangle(jnp.asarray(ins[0]), lower, unit)
        op = jnp.swapaxes(op, -1, -2) if transpose else op
        x = outs[0]
        return [jnp.matmul(op, x) if left else jnp.matmul(x, op)]

    def log_det(ins):
        if unit:
            return 0.0, None
        diag = jnp.abs(jnp.diagonal(jnp.asarray(ins[0]), axis1=-2, axis2=-1))
        ok = jnp.all(diag > 0)
        return per_rhs * batch * jnp.sum(jnp.log(jnp.where(diag > 0, diag, 1.0))), ok

    matrix = pat.const(0)
    constant = None if matrix is None else _concrete_log_det(log_det, [matrix], "triangular_solve", eqn)
    side = "A x" if left else "x A"
    return _ForwardMapSolver([1], apply, log_det, constant, f"undo a triangular solve: b = {side}")


DEFAULT_RULES.register(lax.linalg.triangular_solve_p, _triangular_rule)


# -- custom_linear_solve: matvec(x) = b, the matvec a jaxpr of its constants -------------------
def _eval_closed(closed, *args):
    from .._compat import jaxpr_parts

    jaxpr, consts = jaxpr_parts(closed)
    return jax.core.eval_jaxpr(jaxpr, consts, *args)


def _linear_solve_parts(eqn):
    """``(n_consts, n_matvec_consts)``: how many operands are constants of the four maps, and
    how many of those the matvec reads (the first ones); the rest are the right-hand sides."""
    lengths = eqn.params["const_lengths"]
    return int(sum(lengths)), int(lengths.matvec)


#: the most unknown entries whose dense Jacobian a linear solve forms for its log|det|
MAX_DENSE_SOLVE = 1024


def _linear_solve_rule(pat):
    eqn = pat.eqn
    n_consts, n_matvec = _linear_solve_parts(eqn)
    rhs = list(range(n_consts, len(eqn.ins)))
    if not (all(pat.known_out) and all(pat.known_in[:n_consts]) and not any(pat.known_in[n_consts:])):
        return None
    if any(not eqn.ins[k].is_float for k in rhs) or len({id(eqn.ins[k]) for k in rhs}) < len(rhs):
        return None  # one variable at two right-hand-side places is not a solve for it
    if any(jnp.issubdtype(o.dtype, jnp.complexfloating) for o in eqn.outs):
        return None  # a complex map's density is |det|² over the reals: not this rule's
    size = sum(o.size for o in eqn.outs)
    if size > MAX_DENSE_SOLVE:
        from ..errors import InversionError

        raise InversionError(
            f"custom_linear_solve with {size} unknowns: ppinv forms the dense {size}×{size} Jacobian of its "
            f"matvec for log|det| and does so for at most {MAX_DENSE_SOLVE} unknowns:\n    {eqn.describe()}"
        )
    matvec = eqn.params["jaxprs"].matvec
    shapes = [o.shape for o in eqn.outs]
    offsets = np.cumsum([0] + [o.size for o in eqn.outs])

    def apply(ins, outs):
        return list(_eval_closed(matvec, *ins[:n_matvec], *outs))

    def log_det(ins):
        def flat_map(u):
            xs = [u[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes)]
            return jnp.concatenate([jnp.ravel(b) for b in _eval_closed(matvec, *ins[:n_matvec], *xs)])

        dtype = eqn.outs[0].dtype
        jac = jax.jacfwd(flat_map)(jnp.zeros((size,), dtype))
        sign, value = jnp.linalg.slogdet(jac)
        ok = sign != 0
        return jnp.where(ok, value, 0.0), ok

    known = [pat.const(k) for k in range(n_matvec)]
    constant = None
    if all(k is not None for k in known):
        constant = _concrete_log_det(log_det, known, "custom_linear_solve", eqn)
    return _ForwardMapSolver(rhs, apply, log_det, constant, "undo a linear solve: b = matvec(x)")


DEFAULT_RULES.register(lax.linear_solve_p, _linear_solve_rule)


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


def _matrix_known(eqn, known):
    return bool(known[0])


def _maps_known(eqn, known):
    return all(known[: _linear_solve_parts(eqn)[0]])


# x = A⁻¹ b is linear in b once A (the matvec's constants, and the solver's) is known
deflinear(lax.linalg.triangular_solve_p, operands=(1,), when=_matrix_known, table=DEFAULT_RULES)
deflinear(lax.linear_solve_p, when=_maps_known, table=DEFAULT_RULES)


# -- jnp.linalg.cholesky ---------------------------------------------------------------------
def _cholesky_rule(pat):
    """``L = jnp.linalg.cholesky(A)`` observed whole, ``A`` unknown: kept as one relation (the
    ``cholesky`` joint solve reads its lower triangle, ``A = L·Lᵀ``) and refused here with why."""
    from ..errors import InversionError
    from .control import call_body_rule
    from .functions import is_library_call

    if not is_library_call(pat.eqn, jnp.linalg.cholesky):
        return call_body_rule(pat)
    if not pat.known_out[0] or pat.known_in[0] or not pat.allow_theta:
        return None  # only once nothing else can move: A may yet be determined another way
    (a,) = pat.eqn.ins
    n = a.shape[-1]
    raise InversionError(
        f"the factor L of jnp.linalg.cholesky at {pat.eqn.source} is known whole here (observed, or its "
        f"entries above the diagonal freed from θ), but cholesky reads only the symmetric part "
        f"(A + Aᵀ)/2 of its {n}×{n} input: the {n * (n - 1) // 2} entries of A's antisymmetric part leave no "
        f"trace in L, and L's {n * (n - 1) // 2} entries above the diagonal are 0 whatever A is. Observe L's "
        f"lower triangle (L[jnp.tril_indices({n})]) of a matrix built from its n(n+1)/2 free entries: ppinv "
        "then solves A = L·Lᵀ."
    )


DEFAULT_RULES.register_function("cholesky", _cholesky_rule)
