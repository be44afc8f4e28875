"""Polar pairs: ``u = r·cos t`` and ``v = r·sin t`` both observed, solved for ``(r, t)``.

Neither relation alone can be solved (each has two unknowns), and they are not
linear; together they are the polar-coordinate map, whose preimages are

    r = s·√(u² + v²),   t = atan2(s·v, s·u) + 2πk,

with a sign θ ``s`` (only when ``r`` may be negative) and an integer period θ
``k`` (the solved ``t`` is checked against its support, as for ``sin``).
``log|det ∂(r, t)/∂(u, v)| = −log √(u² + v²)``. The origin ``u = v = 0`` has
no isolated preimage and is outside the domain.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .theta import ThetaSpec, int_dtype, integer, sign

__all__ = ["PolarBlock"]


class PolarBlock:
    """The interface of :class:`~ppinv._block.LinearBlock`: anchors, leaves, θ, solve, pgf."""

    def __init__(self, cos_anchor, sin_anchor, r, t, r_nonnegative, origin):
        self.anchors = [cos_anchor, sin_anchor]  # the order of the observed values in ``solve``
        self.leaves = [r, t]
        self.known_inputs = []
        self.signed = not r_nonnegative
        shape = tuple(t.shape)
        idt = np.dtype(int_dtype())
        self.theta = (ThetaSpec(shape, idt, integer, "period", origin),)
        if self.signed:
            self.theta += (ThetaSpec(shape, idt, sign, "sign", origin),)
        self.description = f"solve the polar pair for ({r!r}, {t!r}): radius and angle"

    def solve(self, known_env, observed, theta):
        u, v = observed
        k = theta[0]
        s = (1.0 - 2.0 * theta[1]) if self.signed else 1.0
        rad = jnp.hypot(u, v)
        ok = rad > 0
        if self.signed:
            ok = ok & ((theta[1] == 0) | (theta[1] == 1))
        r = s * rad
        t = jnp.arctan2(s * v, s * u) + 2 * jnp.pi * k
        ld = -jnp.sum(jnp.log(jnp.where(ok, rad, 1.0)))
        return [r, t], ld, jnp.all(ok)

    def pgf(self, known_env, leaf_values):
        r, t = leaf_values
        neg = r < 0
        # atan2 of the (sign-corrected) point is t wrapped into (−π, π]; k counts the turns
        base = jnp.arctan2(jnp.sin(t), jnp.cos(t))
        k = jnp.round((t - base) / (2 * jnp.pi)).astype(int_dtype())
        if self.signed:
            return (k, neg.astype(int_dtype()))
        return (k,)
