"""Solving ``K u = rhs`` for ``u`` (``K`` m×n of rank m): :class:`MatrixSolve`, used by joint
linear blocks (``block.py``) and by the ``dot_general`` rule.

How it is solved depends on what is known about ``K`` when the inverse is
built. In every case value *and* derivatives are exact: a
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
  typical point of the program, see ``KnownStructure`` in ``structure.py``). ``[K⁺ Q]`` has
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

from .._compat import is_concrete
from ..errors import InversionError


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
            # ``initial`` bounds an empty batch's minimum; it takes part in the minimum, so it is the largest rank
            raise InversionError(self.rank_message(int(np.min(np.sum(s > tol, axis=-1), initial=min(m, n)))))
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


def _generic_rank(k):
    """Smallest rank over the batch of a matrix at a typical point."""
    s = np.linalg.svd(k, compute_uv=False)
    tol = s.max(axis=-1, keepdims=True, initial=0.0) * max(k.shape[-2:]) * np.finfo(k.dtype).eps * 16
    return int(np.min(np.sum(s > tol, axis=-1), initial=k.shape[-2]))
