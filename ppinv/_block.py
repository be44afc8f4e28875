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
``dot_general`` rule):

* a constant ``K`` is decomposed once by SVD: ``u = K⁺ rhs + N θ`` with ``N``
  an orthonormal null-space basis, ``log|det| = −Σ log sᵢ``;
* a ``K`` known only at run time is solved by pivots: θ holds the n − m free
  coordinates ``u_F`` and the m pivot coordinates solve
  ``K_P u_P = rhs − K_F θ``; ``log|det| = −log|det K_P|``. Value and
  derivatives are exact whatever ``K`` depends on (an SVD basis held fixed
  under differentiation is not, once ``K`` moves with θ). The pivot columns are
  chosen

  - at run time, by partial pivoting, when ``K`` does not move with θ (model
    arguments, observations, what is computed from them): the best-conditioned
    choice for the data at hand, and the same at every θ;
  - at build time, from ``K`` evaluated at generic inputs (so structural zeros
    are seen), when ``K`` moves with θ: one chart for every θ, where a run-time
    choice would jump. Where the chosen m×m block is singular, ``(y, θ)`` is
    outside the domain; for continuous latents that is a set of measure zero
    (``w_P = 0`` for ``y = w · x``), whose neighbourhood the chart still covers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ._compat import is_concrete
from .errors import InversionError
from .theta import ThetaSpec

__all__ = ["is_linear", "LinearBlock", "JOINTLY_SOLVED", "MatrixSolve", "KnownStructure", "concrete_const"]

_ALWAYS_LINEAR = {
    lax.add_p,
    lax.sub_p,
    lax.neg_p,
    lax.reduce_sum_p,
    lax.broadcast_in_dim_p,
    lax.reshape_p,
    lax.squeeze_p,
    lax.transpose_p,
    lax.rev_p,
    lax.concatenate_p,
    lax.slice_p,
    lax.pad_p,
    lax.cumsum_p,
    lax.convert_element_type_p,
}
for _name in ("copy_p", "stack_p", "split_p", "unstack_p", "expand_dims_p"):
    if hasattr(lax, _name):
        _ALWAYS_LINEAR.add(getattr(lax, _name))
_INDEXED = {lax.dynamic_slice_p, lax.gather_p, lax.dynamic_update_slice_p}
#: primitives that may have no rule of their own because linear blocks solve them
JOINTLY_SOLVED = frozenset(_ALWAYS_LINEAR | _INDEXED)


def concrete_const(v) -> bool:
    """``v`` is a constant whose value is available now.

    A constant closed over from an enclosing ``jit``/``vmap`` is a tracer: known
    at run time only, so it is treated like any other run-time known value.
    """
    return v.is_const and is_concrete(v.value)


def const_has_zero(v) -> bool:
    """``v`` is a concrete constant with a zero entry (tracers are decided at run time)."""
    return concrete_const(v) and bool(np.any(np.asarray(v.value) == 0))


def is_linear(eqn, known) -> bool:
    """Whether ``eqn`` is linear (affine) in its unknown inputs, given which inputs are known."""
    if not all(v.is_float for v in eqn.outs):
        return False
    unknown = [i for i, k in enumerate(known) if not k]
    if not unknown or any(not eqn.ins[i].is_float for i in unknown):
        return False
    p = eqn.prim
    if p in _ALWAYS_LINEAR:
        return True
    if p in (lax.mul_p, lax.dot_general_p):
        if p is lax.mul_p and any(const_has_zero(v) for v in eqn.ins):
            return False  # a zero factor determines nothing
        return len(unknown) == 1 and eqn.ins[0] is not eqn.ins[1]
    if p is lax.div_p:
        return unknown == [0] and not const_has_zero(eqn.ins[1])
    if p is lax.select_n_p:
        return bool(known[0])
    if p in _INDEXED:  # linear in the operand(s) once the indices are known
        return all(k for v, k in zip(eqn.ins, known) if not v.is_float)
    if p is lax.integer_pow_p:
        return eqn.params["y"] == 1
    return False


# --- what the build knows about run-time known values ------------------------------------------
class KnownStructure:
    """What the build knows about variables whose values are known only at run time.

    ``moves_with_theta(v)`` is False for constants, for the ``fixed`` inputs
    (model arguments and observations of a top-level inverse) and for what is
    computed from those only: such a value is the same at every θ.

    ``generic(v)`` is the value ``v`` takes when the program's inputs are drawn
    at random inside their supports. A matrix evaluated there has the
    structural zeros and repeated entries of the real one and generic values
    otherwise; linear solves choose pivots and check rank with it. ``None``
    when that evaluation fails or is not finite.
    """

    def __init__(self, eqns=(), supports=None, fixed=(), seed=0):
        self.eqns = list(eqns)  # program order
        self.supports = dict(supports or {})
        self._fixed = set(fixed)
        for e in self.eqns:
            if all(v.is_const or v in self._fixed for v in e.ins):
                self._fixed.update(e.outs)
        self._rng = np.random.RandomState(seed)
        self._roots = {}
        self._values = {}

    def moves_with_theta(self, v) -> bool:
        return not (v.is_const or v in self._fixed)

    def generic(self, v):
        if v.is_const:
            return np.asarray(v.value) if is_concrete(v.value) else None
        if v not in self._values:
            self._evaluate(v)
        return self._values.get(v)

    def _evaluate(self, target):
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

        try:
            with jax.ensure_compile_time_eval():
                vals = [self._draw(u) for u in roots]
                computed = jax.jit(run)(vals)
        except Exception:  # an input outside some domain, a primitive that cannot run here
            self._values[target] = None
            return
        for v, val in list(zip(roots, vals)) + list(zip(outs, computed)):
            val = np.asarray(val)
            finite = not np.issubdtype(val.dtype, np.inexact) or bool(np.all(np.isfinite(val)))
            self._values.setdefault(v, val if finite else None)

    def _draw(self, u):
        """A random value of input ``u`` inside its support (drawn once, shared by every evaluation)."""
        if u not in self._roots:
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
                value = np.asarray(value, u.dtype)
            self._roots[u] = value
        return self._roots[u]


# --- K u = rhs ---------------------------------------------------------------------------------------
class MatrixSolve:
    """Solve ``K u = rhs`` for ``u``; see the module docstring for the three ways.

    Shapes: ``K`` (batch..., m, n) of rank m ≤ n, ``rhs`` (batch..., m, q), the
    free coordinates θ (batch..., n − m, q), ``u`` (batch..., n, q).

    Parameters
    ----------
    constant:
        ``K`` itself when it is a constant (decomposed now by SVD).
    generic:
        ``K`` at generic inputs (see :class:`KnownStructure`), or ``None``: checked
        for rank, and the source of build-time pivots.
    adaptive:
        ``K`` does not move with θ: pivots are chosen at run time.
    rank_message:
        ``rank_message(rank) -> str``: why a rank-deficient ``K`` is refused.
    """

    def __init__(self, batch, m, n, *, constant=None, generic=None, adaptive=False, rank_message=None):
        self.batch, self.m, self.n, self.null = tuple(batch), m, n, n - m
        self.rank_message = rank_message or (lambda r: f"rank-deficient {m}×{n} linear map (rank {r} < {m})")
        self.svd = None
        self.order = None  # build-time pivot order: (batch..., n), the m pivot columns first
        if constant is not None:
            self.svd = self._svd(np.asarray(constant))
            return
        if generic is not None:
            generic = np.asarray(generic, np.float64).reshape(self.batch + (m, n))
            rank = _generic_rank(generic)
            if rank < m:
                raise InversionError(self.rank_message(rank))
        if self.null and not adaptive:
            self.order = _pivot_order_now(generic, self.batch, m, n)

    @property
    def kind(self) -> str:
        if self.svd is not None:
            return "SVD of a constant matrix"
        if not self.null:
            return "square solve"
        return "pivot solve, " + ("pivots chosen at build time" if self.order is not None else "pivots chosen per call")

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
        kp, kf, order, ok, kp_inv = self._factor(k)
        b = rhs if kf is None else rhs - jnp.matmul(kf, free)
        up = jnp.matmul(kp_inv, b) if kp_inv is not None else jnp.linalg.solve(kp, b)
        u = up if order is None else _unpermute(jnp.concatenate([up, free], axis=-2), order)
        log_det = -jnp.linalg.slogdet(kp)[1]
        return u, log_det, jnp.all(ok)

    def free_coords(self, k, u):
        """θ reproducing ``u`` (the PGF): (batch..., n − m, q)."""
        if self.svd is not None:
            return jnp.matmul(np.swapaxes(self.svd[1], -1, -2).astype(u.dtype), u)
        order = self.order if self.order is not None else self._factor(k)[2]
        return jnp.take_along_axis(u, _expand(order[..., self.m :], -1), axis=-2)

    def _factor(self, k):
        """Pivot block ``K_P``, the rest ``K_F``, the column order, whether ``K_P`` is invertible
        and, for a matrix known now, ``K_P⁻¹`` (so a sampler does not refactor it at every call)."""
        if is_concrete(k):
            with jax.ensure_compile_time_eval():
                kp, kf, order, ok = self._pivot_blocks(jnp.asarray(k))
                kp_inv = jnp.linalg.inv(kp)
            return kp, kf, order, ok, kp_inv
        return (*self._pivot_blocks(k), None)

    def _pivot_blocks(self, k):
        m = self.m
        order = None
        if self.null:
            order = self.order if self.order is not None else _pivot_order_of(k, m)
            kp = jnp.take_along_axis(k, _expand(order[..., :m], -2), axis=-1)
            kf = jnp.take_along_axis(k, _expand(order[..., m:], -2), axis=-1)
        else:
            kp, kf = k, None
        ok = _invertible(kp)
        # a singular block is outside the domain; an identity in its place keeps NaN out of gradients
        kp = jnp.where(ok[..., None, None], kp, jnp.eye(m, dtype=kp.dtype))
        return kp, kf, order, ok


def _expand(idx, axis):
    return jnp.expand_dims(jnp.asarray(idx), axis)


def _unpermute(stacked, order):
    """``u`` with ``u[order[i]] = stacked[i]`` along the second-last axis."""
    inverse = jnp.argsort(jnp.asarray(order), axis=-1)
    return jnp.take_along_axis(stacked, _expand(inverse, -1), axis=-2)


def _invertible(kp):
    """Per batch element: ``K_P`` is finite and nonsingular relative to its scale (LU diagonal)."""
    kp = lax.stop_gradient(kp)
    m = kp.shape[-1]
    finite = jnp.all(jnp.isfinite(kp), axis=(-2, -1))
    lu = lax.linalg.lu(jnp.where(finite[..., None, None], kp, jnp.eye(m, dtype=kp.dtype)))[0]
    d = jnp.abs(jnp.diagonal(lu, axis1=-2, axis2=-1))
    tol = jnp.max(d, axis=-1) * m * jnp.finfo(kp.dtype).eps
    return finite & (jnp.min(d, axis=-1) > tol)


def _pivot_order_of(k, m):
    """Run-time pivot columns of ``K``: partial pivoting of ``Kᵀ`` (m×m block kept well-conditioned)."""
    perm = lax.linalg.lu(lax.stop_gradient(jnp.swapaxes(k, -1, -2)))[2]
    return perm


def _pivot_order_now(generic, batch, m, n):
    """Build-time pivot columns: QR with column pivoting of ``K`` at generic inputs (first m if unknown)."""
    if generic is None:
        return np.broadcast_to(np.arange(n), batch + (n,)).copy()
    import scipy.linalg

    flat = generic.reshape((-1, m, n))
    orders = [scipy.linalg.qr(g, mode="r", pivoting=True)[1] for g in flat]
    return np.stack(orders).reshape(batch + (n,)).astype(np.int64)


def _generic_rank(k):
    """Smallest rank over the batch of a matrix at generic inputs."""
    s = np.linalg.svd(k, compute_uv=False)
    tol = s.max(axis=-1, keepdims=True, initial=0.0) * max(k.shape[-2:]) * np.finfo(k.dtype).eps * 16
    return int(np.min(np.sum(s > tol, axis=-1), initial=k.shape[-2]))


# --- joint blocks --------------------------------------------------------------------------------------
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
                (), self.rows, self.cols, generic=self._generic_matrix(structure), adaptive=adaptive,
                rank_message=self._rank_message,
            )
        self.description = (
            f"joint linear solve of {len(self.anchors)} relation(s) for {len(self.leaves)} variable(s) "
            f"({self.rows}×{self.cols}, {self.matrix.kind})"
        )

    def _rank_message(self, rank):
        return (
            f"rank-deficient linear block: {self.rows} observed combinations of {self.cols} unknowns "
            f"have rank {rank}, so some observations are redundant or contradictory. Relations:\n    "
            + "\n    ".join(e.describe() for e in self.anchors)
        )

    def _generic_matrix(self, structure):
        """M at generic values of the known inputs (``None`` where they cannot be had).

        A block deficient there is deficient for almost every input (three
        observations of one sum, say), and is refused now rather than failing at
        every call; its pivots are chosen there too.
        """
        env = {}
        for v in self.known_inputs:
            val = structure.generic(v)
            if val is None or not (v.is_float or v.is_const):
                return None  # integer inputs (indices) change the structure: decide at run time
            env[v] = val
        try:
            return self._matrix(env)[1]
        except InversionError:
            return None
        except Exception:  # inputs outside some domain: leave the check to run time
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
