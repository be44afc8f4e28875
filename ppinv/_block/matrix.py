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
* A ``K`` that moves with θ gets a chart that is a smooth function of ``K``,
  centred at ``c`` and scaled by ``s`` (the mean and spread of ``u`` over a
  model's prior draws, ``KnownStructure.reference``; ``c = 0``, ``s = 1``
  when unknown). Per column of ``u``, in the coordinates ``w = (u − c)/s``
  the system is ``K̃ w = r`` with ``K̃ = K diag(s)`` and ``r = rhs − K c``, and
  ``w = K̃⁺ r + Q θ``: ``Q`` is the projection ``(I − K̃⁺K̃) B`` of a fixed
  orthonormal basis ``B`` (the null space of ``K̃`` at a typical point of the
  program, see ``KnownStructure`` in ``structure.py``), orthonormalised by the
  Cholesky factor of its Gram matrix (smooth in ``K``). ``[K̃⁺ Q]`` has
  orthogonal blocks and ``Q`` orthonormal columns, so
  ``log|det| = Σ log s − ½ log det K̃K̃ᵀ`` and the PGF is ``θ = Qᵀ w``. Why
  centre and scale: for a Gaussian prior ``u ~ N(c, diag s²)``, θ given ``K``
  is then exactly ``N(0, I)``, whatever ``K`` is — a sampler meets no shear
  between θ and the variables ``K`` is made of (an uncentred chart moves θ's
  conditional mean by ``|c|`` per unit change of ``K``). Where the projection
  loses rank (the null space of ``K̃`` has turned to meet the orthogonal
  complement of ``B``, for ``y = w·x`` where ``w ⟂ w_typical``) ``(y, θ)`` is
  outside the domain: a set of measure zero, far from the typical point.
  (Pivots fixed at build time would be singular wherever a pivot entry
  vanishes, ``w_P = 0``, which can lie in the bulk of the posterior, as for the
  fractions of a mixing model.)
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
    free coordinates θ (batch..., n − m, q), ``u`` (batch..., n, q). ``solve``'s
    log|det| is per batch element, summed over the q columns.

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
    columns:
        ``q``, the number of columns of ``u`` solved for with the same ``K``.
    centre, scale:
        The chart's centre and scale for ``u`` (batch..., n, q), either may be
        ``None``; read only by the chart of a ``K`` that moves with θ.
    rank_message:
        ``rank_message(rank) -> str``: why a rank-deficient ``K`` is refused.
    """

    def __init__(self, batch, m, n, *, constant=None, generic=None, typical=None, adaptive=False,
                 columns=1, centre=None, scale=None, rank_message=None):
        self.batch, self.m, self.n, self.null = tuple(batch), m, n, n - m
        self.columns = columns
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
            self.chart = _Chart(self.batch, n, columns, centre, scale)
            self.basis = _reference_basis(self.chart.whitened(typical), self.chart.batch, m, n)

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
        q = rhs.shape[-1]
        if self.svd is not None:
            pinv, null, log_det = self.svd
            u = jnp.matmul(pinv.astype(rhs.dtype), rhs)
            if self.null:
                u = u + jnp.matmul(null.astype(rhs.dtype), free)
            return u, log_det * q, None
        if self.basis is not None:
            return self.chart.solve(jnp.asarray(k), rhs, free, self.basis)
        u, log_det, ok = _pivot_solve(k, rhs, free, self.m)
        return u, log_det * q, ok

    def free_coords(self, k, u):
        """θ reproducing ``u`` (the PGF): (batch..., n − m, q)."""
        if self.svd is not None:
            return jnp.matmul(np.swapaxes(self.svd[1], -1, -2).astype(u.dtype), u)
        if self.basis is not None:
            return self.chart.free_coords(jnp.asarray(k), u, self.basis)
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


def _orthonormal_null_basis(k, basis):
    """``Q``: the projection ``(I − K⁺K) B`` orthonormalised (``Q L⁻ᵀ`` with ``L`` the Cholesky factor
    of its Gram matrix: smooth in ``K``), ``KKᵀ`` (guarded), and whether both Gram matrices are
    invertible."""
    g, ok_g = _guarded(jnp.matmul(k, jnp.swapaxes(k, -1, -2)))
    b = jnp.asarray(basis, k.dtype)
    q = b - jnp.matmul(jnp.swapaxes(k, -1, -2), jnp.linalg.solve(g, jnp.matmul(k, b)))
    h, ok_h = _guarded(jnp.matmul(jnp.swapaxes(q, -1, -2), q))
    chol = jnp.linalg.cholesky(h)
    q = jnp.swapaxes(lax.linalg.triangular_solve(chol, jnp.swapaxes(q, -1, -2), left_side=True, lower=True), -1, -2)
    return q, g, ok_g & ok_h


class _Chart:
    """The centred, scaled chart of a ``K`` that moves with θ (module docstring): each of the
    q columns of ``u`` is solved in its own whitened coordinates, as a batch element."""

    def __init__(self, batch, n, columns, centre, scale):
        shape = tuple(batch) + (n, columns)
        self.centre = np.zeros(shape) if centre is None else np.broadcast_to(np.asarray(centre, np.float64), shape)
        self.scale = np.ones(shape) if scale is None else np.broadcast_to(np.asarray(scale, np.float64), shape)
        self.batch = tuple(batch) + (columns,)  # per column: (batch..., q, ...)
        self.log_scale = np.sum(np.log(self.scale), axis=(-2, -1))

    def whitened(self, k):
        """``K̃`` per column (batch..., q, m, n), for a NumPy or JAX ``K`` (batch..., m, n)."""
        if k is None:
            return None
        scale = np.swapaxes(self.scale, -1, -2).astype(k.dtype)  # (batch..., q, n); NumPy stays NumPy
        return k[..., None, :, :] * scale[..., :, None, :]

    def solve(self, k, rhs, free, basis):
        """``u = c + s ⊙ (K̃⁺ r + Q θ)`` per column; log|det| summed over the columns."""
        dtype = rhs.dtype
        centre = jnp.asarray(self.centre, dtype)
        kt = self.whitened(k)
        r = rhs - jnp.matmul(k, centre)  # (batch..., m, q)
        q, g, ok = _orthonormal_null_basis(kt, basis)
        r_cols = jnp.swapaxes(r, -1, -2)[..., None]  # (batch..., q, m, 1)
        w = jnp.matmul(jnp.swapaxes(kt, -1, -2), jnp.linalg.solve(g, r_cols))[..., 0]  # (batch..., q, n)
        if free is not None:
            w = w + jnp.matmul(q, jnp.swapaxes(free, -1, -2)[..., None])[..., 0]
        u = centre + jnp.asarray(self.scale, dtype) * jnp.swapaxes(w, -1, -2)
        log_det = jnp.asarray(self.log_scale, dtype) - 0.5 * jnp.sum(jnp.linalg.slogdet(g)[1], axis=-1)
        return u, log_det, jnp.all(ok)

    def free_coords(self, k, u, basis):
        """θ reproducing ``u``: ``Qᵀ w`` per column, (batch..., n − m, q)."""
        q, _, _ = _orthonormal_null_basis(self.whitened(k), basis)
        w = (u - jnp.asarray(self.centre, u.dtype)) / jnp.asarray(self.scale, u.dtype)  # (batch..., n, q)
        t = jnp.matmul(jnp.swapaxes(q, -1, -2), jnp.swapaxes(w, -1, -2)[..., None])[..., 0]  # (batch..., q, null)
        return jnp.swapaxes(t, -1, -2)


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
