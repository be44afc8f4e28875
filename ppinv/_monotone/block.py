"""The monotone block: ``F(x) = z`` solved elementwise by Newton's method safeguarded by bisection
in the unconstrained coordinate of the leaf's support, with implicit derivatives
(:class:`MonotoneBlock`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ..ir import inputs_from_outside


def _direction(transform, shape, dtype):
    """+1 where the elementwise bijection ``transform`` increases, −1 where it decreases
    (the sign of its derivative at 0; each element's map is monotone)."""
    u = jnp.zeros(shape, dtype)
    slope = jax.jvp(lambda t: transform(t).astype(dtype), (u,), (jnp.ones_like(u),))[1]
    return lax.stop_gradient(jnp.where(slope < 0, -1.0, 1.0).astype(dtype))


def _tangent_solve(linear, y):
    """``y / F′(x)``, elementwise. Where ``F′(x) = 0`` the solve is not ok (no root found, or a
    critical point); dividing by 1 there keeps NaN out of the derivatives of the pieces a
    piecewise solve computes and does not pick."""
    d = linear(jnp.ones_like(y))
    return y / jnp.where(d != 0, d, 1.0)


class MonotoneBlock:
    """Solve ``anchor`` (known output) for the single leaf of a strictly monotone cone."""

    max_bracket_steps = 1100  # doublings: enough to reach any float64 magnitude
    max_iterations = 200

    def __init__(self, anchor, eqns, leaf, leaf_support, sign, origin):
        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self.leaf = leaf
        self.sign = sign
        self.support = leaf_support if leaf_support is not None else constraints.real
        self.known_inputs = inputs_from_outside(self.eqns, leaf)
        self.theta = ()
        kind = "increasing" if sign > 0 else "decreasing"
        self.description = f"solve a strictly {kind} function of {leaf!r} numerically (Newton on a bracket)"

    def _forward(self, known_env, x):
        env = {self.leaf: x}
        for e in self.eqns:
            vals = [v.value if v.is_const else (env[v] if v in env else known_env[v]) for v in e.ins]
            (env[e.outs[0]],) = e.bind(*vals)
        return env[self.anchor.outs[0]]

    def _derivative(self, known_env, x):
        return jax.jvp(lambda t: self._forward(known_env, t), (x,), (jnp.ones_like(x),))[1]

    def _search(self, g, shape, dtype):
        """Root of the increasing elementwise ``g`` on the real line (u, the unconstrained
        coordinate of the support)."""
        one = jnp.ones(shape, dtype)
        lo, hi = -one, one
        glo, ghi = g(lo), g(hi)
        finfo = jnp.finfo(dtype)

        def bracket_cond(s):
            k, lo, hi, glo, ghi = s
            return (k < self.max_bracket_steps) & jnp.any((glo > 0) | (ghi < 0))

        def bracket_body(s):
            k, lo, hi, glo, ghi = s
            move_lo = glo > 0
            move_hi = ghi < 0
            nlo = jnp.where(move_lo, jnp.maximum(2 * lo, -finfo.max), lo)  # lo < 0 < hi throughout
            nhi = jnp.where(move_hi, jnp.minimum(2 * hi, finfo.max), hi)
            return k + 1, nlo, nhi, g(nlo), g(nhi)

        _, lo, hi, glo, ghi = lax.while_loop(bracket_cond, bracket_body, (0, lo, hi, glo, ghi))
        found = (glo <= 0) & (ghi >= 0)

        gprime = jax.grad(lambda t: jnp.sum(g(t)))
        u0 = jnp.where(glo == 0, lo, jnp.where(ghi == 0, hi, 0.5 * lo + 0.5 * hi))

        def width_done(lo, hi):
            return (hi - lo) <= 4 * finfo.eps * jnp.maximum(jnp.abs(lo), jnp.abs(hi)) + finfo.tiny

        def cond(s):
            k, lo, hi, u, gu = s
            return (k < self.max_iterations) & jnp.any(found & (gu != 0) & ~width_done(lo, hi))

        def body(s):
            k, lo, hi, u, gu = s
            lo = jnp.where(gu < 0, u, lo)
            hi = jnp.where(gu > 0, u, hi)
            step = gu / gprime(u)
            cand = u - step
            bisect = ~jnp.isfinite(cand) | (cand <= lo) | (cand >= hi)
            cand = jnp.where(bisect, 0.5 * lo + 0.5 * hi, cand)
            return k + 1, lo, hi, cand, g(cand)

        _, lo, hi, u, gu = lax.while_loop(cond, body, (0, lo, hi, u0, g(u0)))
        return u, found

    def solve(self, known_env, z, theta=()):
        z = jnp.asarray(z)
        dtype = self.leaf.dtype
        shape = self.leaf.shape
        transform = biject_to(self.support)
        # F∘T increases in u when F and the support's bijection T run the same way: T falls
        # for less_than (c − eᵘ), so the search must see −F there
        sign = self.sign * _direction(transform, shape, dtype)

        def residual(x):
            return self._forward(known_env, x) - z

        def solve_fn(f, x_guess):
            def g(u):
                return sign * f(transform(u).astype(dtype))

            u, _ = self._search(g, shape, dtype)
            return transform(u).astype(dtype)

        x = lax.custom_root(residual, jnp.zeros(shape, dtype), solve_fn, _tangent_solve)
        fx = self._forward(known_env, x)
        d = self._derivative(known_env, x)
        finfo = jnp.finfo(dtype)
        # converged to round-off: the residual is at the scale of the terms of F at x
        scale = jnp.abs(z) + jnp.abs(d * x) + 1.0
        ok = jnp.all((jnp.abs(fx - z) <= 64 * finfo.eps * scale) & (d != 0) & jnp.isfinite(x))
        ok = ok & jnp.all(self.support.check(x))
        ld = -jnp.sum(jnp.log(jnp.where(d != 0, jnp.abs(d), 1.0)))
        return x, ld, ok

    def pgf(self, known_env, x):
        return ()
