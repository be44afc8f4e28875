"""Linear solves: joint blocks of linear relations, and the linear algebra they share.

Two observed linear combinations of the same variables (``a + b`` and
``a − b``), an array recovered from several slices of it, a latent vector
concatenated with data and then mapped linearly: each relation alone has too
many unknowns, but together they form a linear system

    y_block = M · u_leaves + c

which is solved at once (θ is empty for square blocks). ``M`` and ``c`` are
found by evaluating the block (``jax.jacfwd`` of a linear map).

How ``K u = rhs`` (``K`` m×n of rank m) is solved depends on what is known
about ``K`` when the inverse is built (:class:`MatrixSolve`, also used by the
``dot_general`` rule). In every case value *and* derivatives are exact: a
null-space basis computed from ``K`` and held fixed under differentiation is
not, once ``K`` moves with θ (samplers and optimizers then follow a wrong
gradient).

* A constant ``K`` is decomposed once by SVD: ``u = K⁺ rhs + N θ`` with ``N``
  an orthonormal null-space basis, ``log|det| = −Σ log sᵢ``.
* A square ``K`` known at run time: ``u = K⁻¹ rhs``, ``log|det| = −log|det K|``.
* A ``K`` that does not move with θ (model arguments, observations, what is
  computed from them only) is solved by pivots chosen per call by partial
  pivoting: θ holds n − m coordinates ``u_F`` and the others solve the m×m
  system ``K_P u_P = rhs − K_F θ``; ``log|det| = −log|det K_P|``. The pivots
  are piecewise constant in ``K`` and the same at every θ.
* A ``K`` that moves with θ gets a chart that is a smooth function of ``K``:
  ``u = K⁺ rhs + Q θ`` with ``Q = (I − K⁺K) B``, the projection onto the null
  space of a fixed orthonormal basis ``B`` (the null space of ``K`` at a
  typical point of the program, see :class:`KnownStructure`). ``[K⁺ Q]`` has
  orthogonal blocks, so ``log|det| = −½ log det KKᵀ + ½ log det QᵀQ``, and
  the PGF is ``θ = (QᵀQ)⁻¹ Qᵀ u``. Where ``Q`` loses rank (the null space of
  ``K`` has turned to meet the orthogonal complement of ``B``, for ``y = w·x``
  where ``w ⟂ w_typical``) ``(y, θ)`` is outside the domain: a set of measure
  zero, far from the typical point. (Pivots fixed at build time would be
  singular wherever a pivot entry vanishes, ``w_P = 0``, which can lie in the
  bulk of the posterior, as for the fractions of a mixing model.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ._compat import is_concrete
from .errors import InversionError, PieceRankError
from .theta import ThetaSpec

__all__ = [
    "is_linear",
    "LinearBlock",
    "PieceRankError",
    "MatrixSolve",
    "KnownStructure",
    "concrete_const",
]

def concrete_const(v) -> bool:
    """``v`` is a constant whose value is available now.

    A constant closed over from an enclosing ``jit``/``vmap`` is a tracer: known
    at run time only, so it is treated like any other run-time known value.
    """
    return v.is_const and is_concrete(v.value)


def const_has_zero(v) -> bool:
    """``v`` is a concrete constant with a zero entry (tracers are decided at run time)."""
    return concrete_const(v) and bool(np.any(np.asarray(v.value) == 0))


def is_linear(eqn, known, moves_with_theta=None, table=None) -> bool:
    """Whether ``eqn`` is linear (affine) in its unknown inputs, given which inputs are known.

    What each primitive is comes from its ``linearity`` slot in ``table`` (default: the
    active rule table; see :func:`ppinv.rules.deflinear`). ``moves_with_theta(v)`` says
    whether a known input changes with θ (:meth:`KnownStructure.moves_with_theta`; by
    default every non-constant does). A ``select_n`` whose predicate moves with θ is a
    piecewise map: each value of the predicate is a piece of the preimage, on which the
    unchosen cases do not enter the output. It is linear only when every case is unknown (a
    known case would be a flat piece, with no unknown to solve), and a block holding it is
    solved only if it is square and of full rank on every piece (:class:`LinearBlock`);
    otherwise the select rule frees the unchosen cases, or the piecewise mechanism inverts
    each piece.
    """
    moves = moves_with_theta or (lambda v: not v.is_const)
    if not all(v.is_float for v in eqn.outs):
        return False
    unknown = [i for i, k in enumerate(known) if not k]
    if not unknown or any(not eqn.ins[i].is_float for i in unknown):
        return False  # an integer operand (an index) must be known
    if eqn.prim is lax.select_n_p:
        # a known case is a flat piece wherever the predicate picks it (``_piecewise.py``)
        return bool(known[0]) and (not moves(eqn.ins[0]) or not any(known[1:]))
    linearity = _table(table).slot("linearity", eqn.prim)
    return linearity is not None and bool(linearity(eqn, known))


def _table(table):
    if table is None:  # the rules package imports this module: look the table up when asked
        from .rules import current_table

        table = current_table()
    return table


# --- what the build knows about run-time known values ------------------------------------------
class KnownStructure:
    """What the build knows about variables whose values are known only at run time.

    ``moves_with_theta(v)`` is False for constants, for the ``fixed`` inputs
    (model arguments and observations of a top-level inverse) and for what is
    computed from those only: such a value is the same at every θ.

    ``generic(v)`` is the value ``v`` takes when the program's inputs are drawn
    at random inside their supports: a matrix evaluated there has the
    structural zeros of the real one and generic values otherwise, so a rank
    deficiency there is one for almost every input. ``typical(v)`` is its value
    at a typical point: inputs at ``typical`` values where given (a prior draw
    of a model's latents, the example arguments of :func:`ppinv.inverse`; a dict
    by variable, or a function returning one, called only when needed), random
    elsewhere. Linear solves choose their chart there. Either is ``None`` when
    the evaluation fails or is not finite.
    """

    def __init__(self, eqns=(), supports=None, fixed=(), typical=None, seed=0):
        self.eqns = list(eqns)  # program order
        self.supports = dict(supports or {})
        self._typical = typical
        self._fixed = set(fixed)
        for e in self.eqns:
            if all(v.is_const or v in self._fixed for v in e.ins):
                self._fixed.update(e.outs)
        self._rng = np.random.RandomState(seed)
        self._random_values = {}
        self._roots = {"generic": {}, "typical": {}}
        self._values = {"generic": {}, "typical": {}}

    def moves_with_theta(self, v) -> bool:
        return not (v.is_const or v in self._fixed)

    def generic(self, v):
        return self._value(v, "generic")

    def typical(self, v):
        return self._value(v, "typical")

    def _value(self, v, mode):
        if v.is_const:
            return np.asarray(v.value) if is_concrete(v.value) else None
        if v not in self._values[mode]:
            self._evaluate(v, mode)
        return self._values[mode].get(v)

    def _evaluate(self, target, mode):
        needed, eqns = {target}, []
        for e in reversed(self.eqns):
            if any(o in needed for o in e.outs):
                eqns.append(e)
                needed.update(u for u in e.ins if not u.is_const)
        eqns.reverse()
        defined = {o for e in eqns for o in e.outs}
        roots = [] if target in defined else [target]
        for e in eqns:
            roots += [u for u in e.ins if not u.is_const and u not in defined and u not in roots]
        outs = [o for e in eqns for o in e.outs]

        def run(root_values):
            env = dict(zip(roots, root_values))
            for e in eqns:
                env.update(zip(e.outs, e.bind(*[u.value if u.is_const else env[u] for u in e.ins])))
            return [env[o] for o in outs]

        values = self._values[mode]
        try:
            # the roots outside compile-time evaluation: a typical point (a model's prior draw) is
            # then one compiled program, not one per operation
            vals = [self._root(u, mode) for u in roots]
            with jax.ensure_compile_time_eval():
                computed = jax.jit(run)(vals)
        except Exception:  # an input outside some domain, a primitive that cannot run here
            values[target] = None
            return
        for v, val in list(zip(roots, vals)) + list(zip(outs, computed)):
            val = np.asarray(val)
            finite = not np.issubdtype(val.dtype, np.inexact) or bool(np.all(np.isfinite(val)))
            values.setdefault(v, val if finite else None)

    def _root(self, u, mode):
        """Input ``u`` in this mode (one value, shared by every evaluation)."""
        roots = self._roots[mode]
        if u not in roots:
            value = self._typical_value(u) if mode == "typical" else None
            roots[u] = value if value is not None else self._random(u)
        return roots[u]

    def _typical_value(self, u):
        if callable(self._typical):
            try:
                self._typical = dict(self._typical())
            except Exception:  # no typical point can be had now: random values instead
                self._typical = {}
        val = (self._typical or {}).get(u)
        if val is None or not is_concrete(val) or np.shape(val) != u.shape:
            return None
        val = np.asarray(val, u.dtype)
        return val if not u.is_float or np.all(np.isfinite(val)) else None

    def _random(self, u):
        """A random value of ``u`` inside its support (drawn once: the same in both modes)."""
        if u not in self._random_values:
            if not u.is_float:
                value = np.zeros(u.shape, u.dtype)
            else:
                value = self._rng.normal(size=u.shape)
                sup = self.supports.get(u)
                if sup is not None and sup is not constraints.real:
                    try:
                        value = np.asarray(biject_to(sup)(jnp.asarray(value)))
                    except Exception:  # a support without a bijection: stay with the normal draw
                        pass
            self._random_values[u] = np.asarray(value, u.dtype)
        return self._random_values[u]


# --- K u = rhs ---------------------------------------------------------------------------------------
class MatrixSolve:
    """Solve ``K u = rhs`` for ``u``; see the module docstring for the ways.

    Shapes: ``K`` (batch..., m, n) of rank m ≤ n, ``rhs`` (batch..., m, q), the
    free coordinates θ (batch..., n − m, q), ``u`` (batch..., n, q).

    Parameters
    ----------
    constant:
        ``K`` itself when it is a constant (decomposed now by SVD).
    generic:
        ``K`` at generic inputs (see :class:`KnownStructure`), or ``None``: a
        rank deficiency there is one for almost every input, and is refused.
    typical:
        ``K`` at a typical point, or ``None``: the reference basis ``B`` is its
        null space (``generic``'s where it is rank-deficient).
    adaptive:
        ``K`` does not move with θ: pivots are chosen at run time.
    rank_message:
        ``rank_message(rank) -> str``: why a rank-deficient ``K`` is refused.
    """

    def __init__(self, batch, m, n, *, constant=None, generic=None, typical=None, adaptive=False,
                 rank_message=None):
        self.batch, self.m, self.n, self.null = tuple(batch), m, n, n - m
        self.rank_message = rank_message or (lambda r: f"rank-deficient {m}×{n} linear map (rank {r} < {m})")
        self.svd = None
        self.basis = None  # B (batch..., n, n − m) of the projection chart
        if constant is not None:
            self.svd = self._svd(np.asarray(constant))
            return
        generic, typical = (None if a is None else np.asarray(a, np.float64).reshape(self.batch + (m, n))
                            for a in (generic, typical))
        if generic is not None:
            rank = _generic_rank(generic)
            if rank < m:
                raise InversionError(self.rank_message(rank))
        if self.null and not adaptive:
            if typical is None or _generic_rank(typical) < m:
                typical = generic
            self.basis = _reference_basis(typical, self.batch, m, n)

    @property
    def kind(self) -> str:
        if self.svd is not None:
            return "SVD of a constant matrix"
        if not self.null:
            return "square solve"
        if self.basis is not None:
            return "null space projected from a reference basis"
        return "pivot solve, pivots chosen per call"

    def _svd(self, k):
        m, n = self.m, self.n
        u, s, vt = np.linalg.svd(k, full_matrices=True)
        tol = s.max(initial=0.0) * max(m, n) * np.finfo(k.dtype).eps
        if s.shape[-1] < m or (s.size and s.min() <= tol):
            raise InversionError(self.rank_message(int(np.min(np.sum(s > tol, axis=-1), initial=0))))
        pinv = np.swapaxes(vt[..., :m, :], -1, -2) / s[..., None, :] @ np.swapaxes(u, -1, -2)  # (batch, n, m)
        null = np.swapaxes(vt[..., m:, :], -1, -2)  # (batch, n, null), orthonormal
        return pinv, null, -np.sum(np.log(s), axis=-1)

    def solve(self, k, rhs, free):
        """``(u, log|det ∂u/∂(rhs, θ)| per batch element, ok)``; ``free`` is ``None`` when n = m."""
        if self.svd is not None:
            pinv, null, log_det = self.svd
            u = jnp.matmul(pinv.astype(rhs.dtype), rhs)
            if self.null:
                u = u + jnp.matmul(null.astype(rhs.dtype), free)
            return u, log_det, None
        if self.basis is not None:
            return _projection_solve(k, rhs, free, self.basis)
        return _pivot_solve(k, rhs, free, self.m)

    def free_coords(self, k, u):
        """θ reproducing ``u`` (the PGF): (batch..., n − m, q)."""
        if self.svd is not None:
            return jnp.matmul(np.swapaxes(self.svd[1], -1, -2).astype(u.dtype), u)
        if self.basis is not None:
            q, h, _ = _projected_basis(jnp.asarray(k), self.basis)
            return jnp.linalg.solve(h, jnp.matmul(jnp.swapaxes(q, -1, -2), u))
        order = _pivot_blocks(k, self.m)[2]
        return jnp.take_along_axis(u, _expand(order[..., self.m :], -1), axis=-2)


def _expand(idx, axis):
    return jnp.expand_dims(jnp.asarray(idx), axis)


def _invertible(a):
    """Per batch element: square ``a`` is finite and nonsingular relative to its scale (LU diagonal)."""
    a = lax.stop_gradient(a)
    m = a.shape[-1]
    finite = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    lu = lax.linalg.lu(jnp.where(finite[..., None, None], a, jnp.eye(m, dtype=a.dtype)))[0]
    d = jnp.abs(jnp.diagonal(lu, axis1=-2, axis2=-1))
    tol = jnp.max(d, axis=-1) * m * jnp.finfo(a.dtype).eps
    return finite & (jnp.min(d, axis=-1) > tol)


def _guarded(a):
    """``(a, ok)`` with ``a`` replaced by the identity where it is singular: outside the domain,
    and no NaN reaches values or gradients."""
    ok = _invertible(a)
    return jnp.where(ok[..., None, None], a, jnp.eye(a.shape[-1], dtype=a.dtype)), ok


# -- a matrix that moves with θ: the null space projected from a fixed reference basis ----------------
def _reference_basis(generic, batch, m, n):
    """``B``: an orthonormal basis of the null space of ``K`` at the typical point (a fixed random
    one when that point is unknown). The chart is singular only where ``K``'s null space turns
    to meet ``B``'s orthogonal complement, far from the typical point."""
    if generic is None:
        rng = np.random.RandomState(0)
        return np.linalg.qr(rng.normal(size=batch + (n, n - m)))[0]
    vt = np.linalg.svd(generic, full_matrices=True)[2]
    return np.swapaxes(vt[..., m:, :], -1, -2)


def _projected_basis(k, basis):
    """``Q = (I − K⁺K) B``, ``QᵀQ`` (guarded) and whether both ``KKᵀ`` and ``QᵀQ`` are invertible."""
    g, ok_g = _guarded(jnp.matmul(k, jnp.swapaxes(k, -1, -2)))
    b = jnp.asarray(basis, k.dtype)
    q = b - jnp.matmul(jnp.swapaxes(k, -1, -2), jnp.linalg.solve(g, jnp.matmul(k, b)))
    h, ok_h = _guarded(jnp.matmul(jnp.swapaxes(q, -1, -2), q))
    return q, h, (g, ok_g & ok_h)


def _projection_solve(k, rhs, free, basis):
    """``u = K⁺ rhs + Q θ``. Its Jacobian ``[K⁺ Q]`` has orthogonal blocks, so
    ``log|det| = −½ log det KKᵀ + ½ log det QᵀQ``; every piece is differentiable in ``K``."""
    k = jnp.asarray(k)
    q, h, (g, ok) = _projected_basis(k, basis)
    u = jnp.matmul(jnp.swapaxes(k, -1, -2), jnp.linalg.solve(g, rhs)) + jnp.matmul(q, free)
    log_det = 0.5 * (jnp.linalg.slogdet(h)[1] - jnp.linalg.slogdet(g)[1])
    return u, log_det, jnp.all(ok)


# -- a matrix that does not move with θ: pivots chosen per call ------------------------------------------
def _pivot_blocks(k, m):
    """``(K_P, K_F, order, ok)``: the pivot columns ``order[..., :m]`` by partial pivoting of ``Kᵀ``
    (keeps ``K_P`` well-conditioned for the matrix at hand), the rest, and whether ``K_P`` is invertible."""
    k = jnp.asarray(k)
    order = None
    kf = None
    kp = k
    if k.shape[-1] > m:
        order = lax.linalg.lu(lax.stop_gradient(jnp.swapaxes(k, -1, -2)))[2]
        kp = jnp.take_along_axis(k, _expand(order[..., :m], -2), axis=-1)
        kf = jnp.take_along_axis(k, _expand(order[..., m:], -2), axis=-1)
    kp, ok = _guarded(kp)
    return kp, kf, order, ok


def _pivot_solve(k, rhs, free, m):
    """``u_F = θ``, ``K_P u_P = rhs − K_F θ``: ``log|det| = −log|det K_P|``. A matrix known now is
    factorised at trace time, so a sampler does not refactor it at every call."""
    if is_concrete(k):
        with jax.ensure_compile_time_eval():
            kp, kf, order, ok = _pivot_blocks(k, m)
            kp_inv, log_det = jnp.linalg.inv(kp), -jnp.linalg.slogdet(kp)[1]
        solve = lambda b: jnp.matmul(kp_inv.astype(b.dtype), b)  # noqa: E731
    else:
        kp, kf, order, ok = _pivot_blocks(k, m)
        log_det = -jnp.linalg.slogdet(kp)[1]
        solve = lambda b: jnp.linalg.solve(kp, b)  # noqa: E731
    if order is None:  # square
        return solve(rhs), log_det, jnp.all(ok)
    up = solve(rhs - jnp.matmul(kf.astype(rhs.dtype), free))
    stacked = jnp.concatenate([up, free], axis=-2)
    inverse = jnp.argsort(order, axis=-1)  # u[order[i]] = stacked[i]
    return jnp.take_along_axis(stacked, _expand(inverse, -1), axis=-2), log_det, jnp.all(ok)


def _piece_values(preds, eqns):
    """Every combination of values of the select predicates ``preds`` (one array per predicate,
    stacked along a leading axis), or ``[]`` when there are more than ``_MAX_PIECE_COMBINATIONS``."""
    n_cases = [max(len(e.ins) - 1 for e in eqns if e.prim is lax.select_n_p and e.ins[0] is p) for p in preds]
    sizes = [p.size for p in preds]
    if np.prod([float(n) ** s for n, s in zip(n_cases, sizes)]) > _MAX_PIECE_COMBINATIONS:
        return []
    axes = [np.arange(n) for n, s in zip(n_cases, sizes) for _ in range(s)]
    combos = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, sum(sizes))
    values, start = [], 0
    for p, s in zip(preds, sizes):
        values.append(combos[:, start : start + s].reshape((len(combos),) + p.shape).astype(p.dtype))
        start += s
    return values


def _generic_rank(k):
    """Smallest rank over the batch of a matrix at a typical point."""
    s = np.linalg.svd(k, compute_uv=False)
    tol = s.max(axis=-1, keepdims=True, initial=0.0) * max(k.shape[-2:]) * np.finfo(k.dtype).eps * 16
    return int(np.min(np.sum(s > tol, axis=-1), initial=k.shape[-2]))


# --- joint blocks --------------------------------------------------------------------------------------
_MAX_PIECE_COMBINATIONS = 64  # predicate values a block through moving selects is checked at


class LinearBlock:
    """Solve the block's anchors (relations with known outputs) for its leaves."""

    def __init__(self, anchors, interior, leaves, known_inputs, exclusive, origin, structure=None):
        # program order: the rows of M (see ``_affine``) and the observed values the
        # scheduler passes to ``solve`` both follow this list
        self.anchors = sorted(anchors, key=lambda e: e.id)
        self.eqns = sorted(set(anchors) | set(interior), key=lambda e: e.id)
        self.leaves = list(leaves)
        self.known_inputs = list(known_inputs)  # known variables the block reads
        self.rows = sum(o.size for e in self.anchors for o in e.outs)
        self.cols = sum(v.size for v in self.leaves)
        self.null = self.cols - self.rows
        dtype = self.leaves[0].dtype
        self.dtype = dtype
        self.theta = ()
        if self.null > 0:
            self.theta = (ThetaSpec((self.null,), dtype, constraints.real_vector, "null_space", origin),)
        structure = structure if structure is not None else KnownStructure()
        self.offset = None  # c, when M and c are constants
        if all(concrete_const(v) for v in self.known_inputs):
            self.offset, m = self._matrix({v: v.value for v in self.known_inputs})
            self.matrix = MatrixSolve((), self.rows, self.cols, constant=m, rank_message=self._rank_message)
        else:
            adaptive = not any(structure.moves_with_theta(v) for v in self.known_inputs)
            self.matrix = MatrixSolve(
                (), self.rows, self.cols, generic=self._matrix_at(structure.generic),
                typical=self._matrix_at(structure.typical) if self.null and not adaptive else None,
                adaptive=adaptive,
                rank_message=self._rank_message,
            )
        self._check_every_piece(structure)
        self.description = (
            f"joint linear solve of {len(self.anchors)} relation(s) for {len(self.leaves)} variable(s) "
            f"({self.rows}×{self.cols}, {self.matrix.kind})"
        )

    def _check_every_piece(self, structure):
        """Refuse (:class:`PieceRankError`) a block through selects whose predicates move with θ
        unless it is square and of full rank at every value of those predicates. Each value is a
        piece of the preimage; the matrix is formed at run time with the values at hand, so a
        piece on which it is singular would be dropped."""
        preds = list(dict.fromkeys(
            e.ins[0] for e in self.eqns if e.prim is lax.select_n_p and structure.moves_with_theta(e.ins[0])
        ))
        if not preds:
            return
        where = "\n    ".join(e.describe() for e in self.anchors)
        if self.null:
            raise PieceRankError(f"a linear block with free directions through a select whose predicate moves "
                                 f"with θ has a null space that changes with the piece:\n    {where}")
        values = _piece_values(preds, self.eqns)
        n_pieces = len(values[0]) if values else 0
        env = {v: structure.generic(v) for v in self.known_inputs if v not in preds}
        if not values or any(val is None for val in env.values()):
            raise PieceRankError(f"a linear block through a select whose predicate moves with θ cannot be checked "
                                 f"on each of its pieces:\n    {where}")

        def matrix(pred_values):
            f = self._affine({**env, **dict(zip(preds, pred_values))})
            return jax.jacfwd(f)(jnp.zeros((self.cols,), self.dtype))

        try:
            with jax.ensure_compile_time_eval():
                ms = np.asarray(jax.jit(jax.vmap(matrix))(values))
        except Exception:  # an input outside some domain: the pieces cannot be checked
            ms = np.full((n_pieces, self.rows, self.cols), np.nan)
        ranks = [_generic_rank(m) if np.all(np.isfinite(m)) else -1 for m in ms]
        if min(ranks) < self.rows:
            bad = int(np.argmin(ranks))
            at = ", ".join(f"{p!r} = {np.asarray(v[bad]).tolist()}" for p, v in zip(preds, values))
            raise PieceRankError(f"a linear block through a select whose predicate moves with θ is singular on "
                                 f"the piece {at}, which it would drop:\n    {where}")

    def _rank_message(self, rank):
        return (
            f"rank-deficient linear block: {self.rows} observed combinations of {self.cols} unknowns "
            f"have rank {rank}, so some observations are redundant or contradictory. Relations:\n    "
            + "\n    ".join(e.describe() for e in self.anchors)
        )

    def _matrix_at(self, value_of):
        """M with every known input at ``value_of(v)`` (``KnownStructure.generic`` or ``.typical``),
        or ``None`` where they cannot be had. A block rank-deficient at generic inputs is deficient
        for almost every input (three observations of one sum, say) and is refused now rather than
        failing at every call."""
        env = {}
        for v in self.known_inputs:
            val = value_of(v)
            if val is None or not (v.is_float or v.is_const):
                return None  # integer inputs (indices) change the structure: decide at run time
            env[v] = val
        try:
            return self._matrix(env)[1]
        except Exception:  # inputs outside some domain, non-finite coefficients: decide at run time
            return None

    # -- the block as a function of its leaves ------------------------------------------
    def _affine(self, known_env):
        """``f(flat_leaves) -> flat anchor outputs`` with the known values fixed."""
        leaves, eqns, anchors = self.leaves, self.eqns, self.anchors
        sizes = [v.size for v in leaves]
        offsets = np.cumsum([0] + sizes)

        def f(flat):
            env = dict(known_env)
            for v, a, b in zip(leaves, offsets[:-1], offsets[1:]):
                env[v] = flat[a:b].reshape(v.shape).astype(v.dtype)
            outs = []
            for e in eqns:
                vals = [v.value if v.is_const else env[v] for v in e.ins]
                res = e.bind(*vals)
                if e in anchors:
                    outs.extend(jnp.ravel(r) for r in res)
                else:
                    for o, r in zip(e.outs, res):
                        env[o] = r
            return jnp.concatenate(outs) if outs else jnp.zeros((0,), flat.dtype)

        return f

    def _matrix(self, known_env):
        """``(c, M)``: the block is ``M u + c``. NumPy arrays when every known value is concrete."""
        f = self._affine(known_env)
        zero = np.zeros((self.cols,), self.dtype)
        if not all(is_concrete(val) for val in known_env.values()):
            return f(zero), jax.jacfwd(f)(zero)
        # one compiled evaluation rather than many eager, per-primitive ones
        # (ensure_compile_time_eval: values stay concrete even when called under jit)
        with jax.ensure_compile_time_eval():
            c, m = jax.jit(lambda z: (f(z), jax.jacfwd(f)(z)))(zero)
        c, m = np.asarray(c), np.asarray(m)
        if not np.all(np.isfinite(m)):
            raise InversionError(
                "linear block with a non-finite coefficient (a division by zero?) cannot be solved:\n    "
                + "\n    ".join(e.describe() for e in self.anchors)
            )
        return c, m

    # -- runtime --------------------------------------------------------------------------
    def _run_time_matrix(self, known_env):
        if self.offset is not None:
            return self.offset, None
        return self._matrix_or_domain(known_env)

    def _matrix_or_domain(self, known_env):
        try:
            return self._matrix(known_env)
        except InversionError:  # non-finite coefficients from concrete run-time values
            nan = np.full((self.rows, self.cols), np.nan, self.dtype)
            return np.zeros((self.rows,), self.dtype), nan

    def solve(self, known_env, observed, theta):
        """Leaves from the anchors' (known) outputs; returns (values, log_det, ok)."""
        c, m = self._run_time_matrix(known_env)
        y = jnp.concatenate([jnp.ravel(v) for v in observed])
        rhs = (y - jnp.asarray(c, y.dtype))[:, None]
        free = theta[0].astype(y.dtype)[:, None] if self.null else None
        u, log_det, ok = self.matrix.solve(m, rhs, free)
        u = u[:, 0]
        out, start = [], 0
        for v in self.leaves:
            out.append(u[start : start + v.size].reshape(v.shape))
            start += v.size
        return out, jnp.asarray(log_det, y.dtype), (jnp.asarray(True) if ok is None else ok)

    def pgf(self, known_env, leaf_values):
        if not self.null:
            return ()
        _, m = self._run_time_matrix(known_env)
        u = jnp.concatenate([jnp.ravel(v) for v in leaf_values])
        return (self.matrix.free_coords(m, u[:, None])[:, 0],)
