"""Joint solves of linear blocks: relations no single rule can solve on its own.

Two observed linear combinations of the same variables (``a + b`` and
``a − b``), an array recovered from several slices of it, a latent vector
concatenated with data and then mapped linearly: each relation alone has too
many unknowns, but together they form a linear system

    y_block = M · u_leaves + c

which is solved at once: ``u = M⁺ (y − c) + N θ`` with ``N`` an orthonormal
basis of the null space of ``M`` (θ is empty for square blocks). The local
``log|det|`` is ``−Σ log sᵢ`` over the singular values of ``M``. ``M`` and
``c`` are found by evaluating the block (``jax.jacfwd`` of a linear map); when
every known input of the block is a constant they are computed once, at build
time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ._compat import is_concrete
from .errors import InversionError
from .theta import ThetaSpec

__all__ = ["is_linear", "LinearBlock", "JOINTLY_SOLVED"]

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
        if p is lax.mul_p and any(v.is_const and np.any(np.asarray(v.value) == 0) for v in eqn.ins):
            return False  # a zero factor determines nothing
        return len(unknown) == 1 and eqn.ins[0] is not eqn.ins[1]
    if p is lax.div_p:
        return unknown == [0] and not (eqn.ins[1].is_const and np.any(np.asarray(eqn.ins[1].value) == 0))
    if p is lax.select_n_p:
        return bool(known[0])
    if p in _INDEXED:  # linear in the operand(s) once the indices are known
        return all(k for v, k in zip(eqn.ins, known) if not v.is_float)
    if p is lax.integer_pow_p:
        return eqn.params["y"] == 1
    return False


class LinearBlock:
    """Solve the block's anchors (relations with known outputs) for its leaves."""

    def __init__(self, anchors, interior, leaves, known_inputs, exclusive, origin):
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
        self.description = (
            f"joint linear solve of {len(self.anchors)} relation(s) for {len(self.leaves)} variable(s) "
            f"({self.rows}×{self.cols})"
        )
        self.decomp = None
        if all(v.is_const for v in self.known_inputs):
            self.decomp = self._decompose({v: v.value for v in self.known_inputs}, concrete=True)
        else:
            self._check_generic_rank()

    def _check_generic_rank(self):
        """Refuse blocks that are rank-deficient whatever their run-time inputs.

        The matrix is evaluated with random values for the known inputs: a block
        deficient there is deficient for almost every input (three observations of
        one sum, say), and is refused now rather than failing at every call.
        """
        rng = np.random.RandomState(0)
        env = {
            v: (v.value if v.is_const else np.asarray(rng.normal(size=v.shape) + 1.5, v.dtype))
            for v in self.known_inputs
        }
        if not all(v.is_float or v.is_const for v in self.known_inputs):
            return
        try:
            self._decompose(env, concrete=True)
        except InversionError:
            raise
        except Exception:  # inputs outside some domain: leave the check to run time
            return

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

    def _decompose(self, known_env, concrete):
        f = self._affine(known_env)
        zero = np.zeros((self.cols,), self.dtype)
        if concrete:  # one compiled evaluation rather than many eager, per-primitive ones
            # (ensure_compile_time_eval: values stay concrete even when called under jit)
            with jax.ensure_compile_time_eval():
                c, m = jax.jit(lambda z: (f(z), jax.jacfwd(f)(z)))(zero)
                c, m = np.asarray(c), np.asarray(m)
        else:
            c, m = f(zero), jax.jacfwd(f)(zero)
        if concrete:
            m_np = np.asarray(m)
            if not np.all(np.isfinite(m_np)):
                raise InversionError(
                    "linear block with a non-finite coefficient (a division by zero?) cannot be solved:\n    "
                    + "\n    ".join(e.describe() for e in self.anchors)
                )
            u, s, vt = np.linalg.svd(m_np, full_matrices=True)
            tol = (s.max() if s.size else 0.0) * max(m_np.shape) * np.finfo(m_np.dtype).eps
            if s.size < self.rows or (s.size and s.min() <= tol):
                rank = int(np.sum(s > tol))
                raise InversionError(
                    f"rank-deficient linear block: {self.rows} observed combinations of {self.cols} unknowns "
                    f"have rank {rank}, so some observations are redundant or contradictory. Relations:\n    "
                    + "\n    ".join(e.describe() for e in self.anchors)
                )
            xp = np
        else:
            # the reduced SVD is differentiable; the null-space basis (full SVD, whose JVP JAX
            # lacks) is held fixed under differentiation: values stay exact, and the
            # potential's gradient ignores only how the basis turns with the context
            u, s, vt = jnp.linalg.svd(m, full_matrices=False)
            xp = jnp
        pinv = (vt[: self.rows].T / s) @ u.T
        if concrete or self.null == 0:
            null = vt[self.rows :].T
        else:
            null = jnp.linalg.svd(jax.lax.stop_gradient(m), full_matrices=True)[2][self.rows :].T
        log_det = -xp.sum(xp.log(s))
        # rank check at run time: relative to the largest singular value, as at build time
        tol = (s.max() if s.size else 1.0) * max(self.rows, self.cols) * jnp.finfo(jnp.result_type(s)).eps
        ok = xp.all(s > tol) if not concrete else True
        return pinv, null, c, log_det, ok

    # -- runtime --------------------------------------------------------------------------
    def _decomposition(self, known_env):
        if self.decomp is not None:
            return self.decomp
        # known values that are concrete now (model arguments closed over by a sampler) are
        # decomposed once per trace with NumPy rather than at every call
        concrete = all(is_concrete(known_env[v]) for v in self.known_inputs)
        return self._decompose(known_env, concrete=concrete)

    def solve(self, known_env, observed, theta):
        """Leaves from the anchors' (known) outputs; returns (values, log_det, ok)."""
        decomp = self._decomposition(known_env)
        pinv, null, c, log_det, ok = decomp
        y = jnp.concatenate([jnp.ravel(v) for v in observed])
        u = jnp.asarray(pinv, y.dtype) @ (y - jnp.asarray(c, y.dtype))
        if self.null:
            u = u + jnp.asarray(null, y.dtype) @ theta[0]
        out, start = [], 0
        for v in self.leaves:
            out.append(u[start : start + v.size].reshape(v.shape))
            start += v.size
        return out, jnp.asarray(log_det, y.dtype), jnp.asarray(ok)

    def pgf(self, known_env, leaf_values):
        if not self.null:
            return ()
        null = self._decomposition(known_env)[1]
        u = jnp.concatenate([jnp.ravel(v) for v in leaf_values])
        return (jnp.asarray(null, u.dtype).T @ u,)
