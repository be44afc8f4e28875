"""Joint linear blocks: observed linear relations solved at once for their unknowns (:class:`LinearBlock`).

Two observed linear combinations of the same variables (``a + b`` and
``a − b``), an array recovered from several slices of it, a latent vector
concatenated with data and then mapped linearly: each relation alone has too
many unknowns, but together they form a linear system

    y_block = M · u_leaves + c

which is solved at once (θ is empty for square blocks). ``M`` and ``c`` are
found by evaluating the block (``jax.jacfwd`` of a linear map).

How the system is solved is :class:`~ppinv._block.matrix.MatrixSolve`'s job (``matrix.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._compat import is_concrete
from ..errors import InversionError, PieceRankError
from ..theta import ThetaSpec
from .linearity import concrete_const
from .matrix import MatrixSolve, _generic_rank
from .structure import KnownStructure


# --- joint blocks --------------------------------------------------------------------------------------
_MAX_PIECE_COMBINATIONS = 64  # predicate values a block through moving selects is checked at


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
            chart = self.null and not adaptive
            centre, scale = self._leaf_reference(structure) if chart else (None, None)
            self.matrix = MatrixSolve(
                (), self.rows, self.cols, generic=self._matrix_at(structure.generic),
                typical=self._matrix_at(structure.typical) if chart else None,
                adaptive=adaptive, centre=centre, scale=scale,
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

    def _leaf_reference(self, structure):
        """The chart's centre and scale: the leaves' (cols, 1), or ``None`` where any is unknown."""
        refs = [structure.reference(v) for v in self.leaves]
        if any(r is None for r in refs):
            return None, None
        centre = np.concatenate([np.ravel(c) for c, _ in refs])[:, None]
        if any(s is None for _, s in refs):
            return centre, None
        return centre, np.concatenate([np.ravel(s) for _, s in refs])[:, None]

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
