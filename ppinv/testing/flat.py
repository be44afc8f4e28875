"""The inverse as a function of one flat vector ``(y, θ_continuous)``, and its dense log|det|."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import tree_flatten
from numpyro.distributions import constraints

from ..inverse import Inverse



class _FlatInverse:
    """``z = (y, θ_continuous) ↦ (x, log|det|)`` as flat vectors, discrete θ held fixed.

    Continuous θ is taken in intrinsic coordinates (a simplex leaf drops its last
    entry), so the Jacobian over ``z`` is square for a full-rank program. The
    derivative and batch functions are compiled once per inverse and reused at
    every point.
    """

    def __init__(self, inv: Inverse, y):
        self.inv = inv
        y_flat, self._y_unravel = ravel_pytree(y)
        self.ny = y_flat.size
        self.dtype = y_flat.dtype
        spec = inv.theta_spec
        self.continuous = [(n, s) for n, s in spec.items() if not s.discrete]
        # the least precise of y, x and θ bounds what finite differences can resolve
        dtypes = [self.dtype] + [a.dtype for a in inv._avals] + [s.dtype for _, s in self.continuous]
        self.precision = min(dtypes, key=lambda d: jnp.finfo(d).bits)
        # one program per inverse: the value, both Jacobians and the finite-difference rows
        # (compiling each separately costs XLA's fixed per-program overhead several times)
        self.probe = jax.jit(self._probe)
        self._jit_x_jacobian = jax.jit(self.x_jacobian)

    def flatten(self, y, theta):
        """``(z, discrete θ)`` for a point ``(y, θ)``."""
        # on the host: each eager jnp op on a new shape would be one more compiled program
        pieces = [np.ravel(np.asarray(leaf, self.dtype)) for leaf in tree_flatten(y)[0]]
        for n, s in self.continuous:
            val = np.asarray(theta[n])
            val = val[..., :-1] if _is_simplex(s.support) else val
            pieces.append(np.ravel(val).astype(self.dtype))
        disc = {n: jnp.asarray(v) for n, v in theta.items() if self.inv.theta_spec[n].discrete}
        return jnp.asarray(np.concatenate(pieces)), disc

    def unflatten(self, z, disc):
        """``(y, θ)`` from ``(z, discrete θ)``."""
        y = self._y_unravel(z[: self.ny])
        theta, i = dict(disc), self.ny
        for n, s in self.continuous:
            shape = tuple(s.shape)
            if _is_simplex(s.support):
                head_shape = shape[:-1] + (shape[-1] - 1,)
                size = int(np.prod(head_shape, dtype=np.int64))
                head = z[i : i + size].reshape(head_shape)
                val = jnp.concatenate([head, 1 - jnp.sum(head, -1, keepdims=True)], -1)
            else:
                size = int(np.prod(shape, dtype=np.int64))
                val = z[i : i + size].reshape(shape)
            theta[n] = val.astype(s.dtype)
            i += size
        return y, theta

    def _x_and_ld(self, z, disc):
        """``x`` (flat) with ``log|det|`` appended as the last entry."""
        x, ld = self.inv.with_log_det(*self.unflatten(z, disc))
        x_flat = ravel_pytree(x)[0].astype(z.dtype)
        return jnp.concatenate([x_flat, jnp.reshape(ld, (1,)).astype(z.dtype)])

    def _probe(self, z, disc, rows):
        """``(x_and_ld(z), jacfwd, jacrev, x_and_ld of every row under vmap)``."""
        fn = lambda v: self._x_and_ld(v, disc)  # noqa: E731
        return fn(z), jax.jacfwd(fn)(z), jax.jacrev(fn)(z), jax.vmap(fn)(rows)

    def x_jacobian(self, z, disc):
        """``∂x/∂z`` by ``jax.jacfwd`` (the dense Jacobian of the density term)."""
        return jax.jacfwd(lambda v: self._x_and_ld(v, disc)[:-1])(z)


def _is_simplex(support):
    return support is constraints.simplex


def _slogdet(jac):
    if jac.shape[0] != jac.shape[1]:
        raise AssertionError(f"Jacobian is {jac.shape}, not square: θ dims do not equal dim X − dim Y.")
    sign, logdet = np.linalg.slogdet(np.asarray(jac, np.float64))  # LAPACK: independent of XLA's
    return -np.inf if sign == 0 else float(logdet)


def dense_log_abs_det(inv: Inverse, y, theta):
    """``log|det ∂x/∂(y, θ_continuous)|`` from the dense Jacobian (``jax.jacfwd``)."""
    flat = _FlatInverse(inv, y)
    z, disc = flat.flatten(y, theta)
    return _slogdet(flat.x_jacobian(z, disc))
