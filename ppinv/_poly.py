"""Joint solves of univariate polynomial blocks.

``z = b·x·(1 − x)`` uses ``x`` twice, so no single rule solves it; but the
relations between ``x`` and ``z`` form a polynomial in ``x`` (elementwise) with
coefficients computed from known values. For degree 2 the roots are given in
closed form and a discrete θ (0: the larger root, 1: the smaller) picks one;
``log|dx/dz| = −½ log(discriminant)``. Outside the domain (no real root) the
solve reports "not ok".
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ._ir import inputs_from_outside
from .theta import ThetaSpec, int_dtype

__all__ = ["poly_degree", "PolynomialBlock", "MAX_DEGREE"]

MAX_DEGREE = 2
_OPS = {lax.add_p, lax.sub_p, lax.mul_p, lax.neg_p, lax.integer_pow_p, lax.convert_element_type_p}
for _name in ("square_p", "copy_p"):
    if hasattr(lax, _name):
        _OPS.add(getattr(lax, _name))


def poly_degree(eqn, degrees):
    """Degree of ``eqn``'s output in the leaf, given its inputs' degrees (``None``: not polynomial)."""
    p = eqn.prim
    if p not in _OPS or not all(o.is_float for o in eqn.outs):
        return None
    d = [degrees.get(v, 0) for v in eqn.ins]
    if p in (lax.add_p, lax.sub_p):
        return max(d)
    if p is lax.mul_p:
        return d[0] + d[1]
    if p is lax.integer_pow_p:
        k = eqn.params["y"]
        return None if k < 0 else d[0] * k
    if getattr(lax, "square_p", None) is p:
        return 2 * d[0]
    if p is lax.convert_element_type_p and not eqn.ins[0].is_float:
        return None
    return d[0]


def _padd(a, b):
    n = max(len(a), len(b))
    zero = jnp.zeros_like(a[0] if a else b[0])
    return [(a[i] if i < len(a) else zero) + (b[i] if i < len(b) else zero) for i in range(n)]


def _pmul(a, b):
    out = [None] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            t = ai * bj
            out[i + j] = t if out[i + j] is None else out[i + j] + t
    return out


class PolynomialBlock:
    """Solve ``anchor`` (known output) for the single leaf ``x`` of a polynomial cone."""

    def __init__(self, anchor, eqns, leaf, degree, origin):
        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self.leaf = leaf
        self.degree = degree
        self.known_inputs = inputs_from_outside(self.eqns, leaf)
        self.theta = (ThetaSpec(leaf.shape, np.dtype(int_dtype()), constraints.integer_interval(0, 1), "root", origin),)
        self.description = f"solve a degree-{degree} polynomial in {leaf!r}; θ picks the root"

    def coefficients(self, known_env):
        """Coefficient arrays ``[c0, c1, c2]`` of the anchor's output as a polynomial in the leaf."""
        dtype = self.leaf.dtype
        one = jnp.ones(self.leaf.shape, dtype)
        env = {self.leaf: [jnp.zeros(self.leaf.shape, dtype), one]}

        def read(v):
            if v in env:
                return env[v]
            val = v.value if v.is_const else known_env[v]
            return [jnp.asarray(val, dtype) * one]

        for e in self.eqns:
            a = [read(v) for v in e.ins]
            p = e.prim
            if p is lax.add_p:
                r = _padd(a[0], a[1])
            elif p is lax.sub_p:
                r = _padd(a[0], [-c for c in a[1]])
            elif p is lax.mul_p:
                r = _pmul(a[0], a[1])
            elif p is lax.neg_p:
                r = [-c for c in a[0]]
            elif p is lax.integer_pow_p or getattr(lax, "square_p", None) is p:
                k = e.params["y"] if p is lax.integer_pow_p else 2
                r = [one]
                for _ in range(k):
                    r = _pmul(r, a[0])
            else:  # convert_element_type, copy
                r = a[0]
            env[e.outs[0]] = r
        coeffs = list(env[self.anchor.outs[0]])
        return coeffs + [jnp.zeros_like(one)] * (self.degree + 1 - len(coeffs))

    def _roots(self, coeffs, z):
        c0, c1, c2 = coeffs[0] - z, coeffs[1], coeffs[2]
        disc = c1 * c1 - 4 * c2 * c0
        quad = c2 != 0
        ok_d = disc >= 0
        sq = jnp.sqrt(jnp.where(ok_d, disc, 1.0))
        c2s = jnp.where(quad, c2, 1.0)
        # the cancellation-free form: q = −(c1 + sign(c1)·√disc)/2, roots q/c2 and c0/q
        # (the textbook (−c1 ± √disc)/2c2 loses the small root when c1² ≫ |4 c2 c0|)
        q = -0.5 * (c1 + jnp.where(c1 >= 0, sq, -sq))
        q_ok = q != 0
        qs = jnp.where(q_ok, q, 1.0)
        hi = q / c2s
        lo = jnp.where(q_ok, c0 / qs, hi)  # q = 0 only for c1 = disc = 0: a double root
        hi, lo = jnp.maximum(hi, lo), jnp.minimum(hi, lo)
        # degenerate to linear where c2 == 0: a single root, reached with θ = 0
        c1s = jnp.where(c1 != 0, c1, 1.0)
        lin = -c0 / c1s
        return hi, lo, lin, quad, ok_d, sq, c1

    def solve(self, known_env, z, theta):
        (choice,) = theta
        coeffs = self.coefficients(known_env)
        hi, lo, lin, quad, ok_d, sq, c1 = self._roots(coeffs, z)
        x = jnp.where(quad, jnp.where(choice == 0, hi, lo), lin)
        slope = jnp.where(quad, sq, jnp.abs(c1))  # |p'(x)| at the root
        ok = jnp.where(quad, ok_d & (sq > 0), (c1 != 0) & (choice == 0))
        ok = ok & ((choice == 0) | (choice == 1))
        ld = -jnp.log(jnp.where(ok, slope, 1.0))
        return x, jnp.sum(ld), jnp.all(ok)

    def pgf(self, known_env, x):
        coeffs = self.coefficients(known_env)
        c1, c2 = coeffs[1], coeffs[2]
        vertex = -c1 / (2 * jnp.where(c2 != 0, c2, 1.0))
        return ((jnp.where(c2 != 0, x < vertex, False)).astype(int_dtype()),)
