"""The rule for ``y = A x`` (``dot_general`` with one operand known): a particular solution plus
a null-space θ, through ``MatrixSolve``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ..._block import KnownStructure, MatrixSolve
from ..._compat import is_concrete
from ...theta import ThetaSpec
from ..table import DEFAULT_RULES
from .._base import Solution, Solver


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
            chart = lay.null and not adaptive
            typical = structure.typical(known_v) if chart else None  # the chart's point
            centre, scale = _reference(structure, unknown_v, lay) if chart else (None, None)
            self.matrix = MatrixSolve(
                lay.batch, lay.m, lay.n,
                generic=None if generic is None else lay.k(np.asarray(generic)),
                typical=None if typical is None else lay.k(np.asarray(typical)),
                adaptive=adaptive, columns=lay.kcols, centre=centre, scale=scale,
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
        total = jnp.sum(jnp.asarray(log_det, y.dtype))
        return Solution(new_ins, list(outs), total, ok)

    def pgf(self, ins, outs):
        lay = self.layout
        if not lay.null:
            return ()
        u = lay.u(ins[self.unknown])
        t = jnp.swapaxes(self.matrix.free_coords(self._k(ins), u), -1, -2)  # (batch, k, null)
        return (t[..., 0, :] if lay.vector else t,)


def _reference(structure, unknown_v, lay):
    """The chart's centre and scale for the unknown operand, in the solve's layout (or ``None``s)."""
    ref = structure.reference(unknown_v)
    if ref is None:
        return None, None
    centre, scale = ref
    as_u = lambda a: None if a is None else np.asarray(lay.u(np.asarray(a)))  # noqa: E731
    return as_u(centre), as_u(scale)


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
