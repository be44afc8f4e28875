"""A square coupled block solved by Newton's method, where a certificate proves the root unique.

``y₁ = x₁ + 0.3·tanh(x₂)``, ``y₂ = x₂ + 0.2·sin(x₁)`` or a planar flow
``z + û·tanh(wᵀz + b)`` observed in full: every relation reads several unknowns,
none has a closed-form solve, and as many entries are observed as there are
unknown entries. A numeric solve is exact only if the root it finds is the only
one, so ppinv first proves, at build time, that ``F`` (the map from the block's
unknowns to its observations) is injective on the box of their supports
(intervals, possibly unbounded):

* an interval enclosure of the Jacobian ``J_F`` over the whole box
  (``ppinv.intervals``: forward mode with interval bounds for every relation);
* a row permutation ``P``, row signs ``S`` and positive column weights ``d``
  such that every matrix ``S·P·J·diag(d)`` of the enclosure has a positive
  diagonal and is strictly diagonally dominant by rows (the comparison matrix
  of the enclosure is a nonsingular M-matrix). Such matrices are P-matrices,
  so ``S·P·F(diag(d)·u)`` has a P-matrix Jacobian on a rectangle, and by the
  Gale–Nikaido theorem it is injective there: so is ``F``, on the whole box.

Without the certificate (an unknown primitive, a Jacobian whose diagonal can
vanish, too weak a dominance) nothing is proposed and the block is refused as
coupled, as before. At run time ``F(x) = y`` is solved by damped Newton
(backtracking on ``‖F − y‖``) in the unconstrained coordinates of the supports,
from their centre, a bounded number of iterations; the solve is "not ok" (a
domain flag) unless the residual is at round-off, since a ``y`` outside the
image of ``F`` has no root. θ is empty, ``log|det ∂x/∂y| = −log|det J_F(x)|``,
and derivatives with respect to ``y`` and the known inputs come from the
implicit function theorem (``lax.custom_root``), not from the iterations.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ..intervals import box_of, has_enclosure, jacobian_enclosure
from ..schedule.steps import read
from ..theta import is_constrained
from .base import Strategy, block_solve
from .cones import connected_groups, expand_cone, known_operands

_MAX_UNKNOWNS = 4  # certificates try every row permutation; the Jacobian is dense
_MARGIN = 1e-9  # relative slack of the dominance (the interval bounds are not outward-rounded)
_MAX_ENTRIES = 64  # per variable of the cone: interval bounds are kept element by element, in Python


class NewtonSystems(Strategy):
    name = "newton"

    def candidates(self, state):
        found = {}
        for anchor in state.stalled():
            cone = _enclosed_cone(state, anchor)
            if cone is not None:
                found[anchor] = cone
        for group in connected_groups(found):
            group = sorted(group, key=state.order.__getitem__)
            leaves = sorted({v for a in group for v in found[a][1]}, key=lambda v: v.id)
            size = sum(v.size for v in leaves)
            if sum(a.outs[0].size for a in group) != size or not 2 <= size <= _MAX_UNKNOWNS:
                continue
            block = NewtonBlock(state, group, [found[a][0] for a in group], leaves)
            if block.certificate is not None:
                yield block_solve(block)


def _enclosed_cone(state, anchor):
    """``(cone, leaves)`` below ``anchor`` through relations with interval enclosures, the
    leaves floating unknowns with interval supports; ``None`` otherwise."""
    def enclosed(e):
        return has_enclosure(e, state.table) and all(v.size <= _MAX_ENTRIES for v in list(e.ins) + list(e.outs))

    if len(anchor.outs) != 1 or not state.is_known(anchor.outs[0]) or not enclosed(anchor):
        return None

    def accept(u, d):
        return u.is_float and enclosed(d)

    found = expand_cone(state, anchor, accept, max_leaves=_MAX_UNKNOWNS)
    if found is None:
        return None
    cone, leaves = found
    if not leaves or any(not v.is_float or box_of(state.supports.get(v)) is None for v in leaves):
        return None
    return cone, leaves


def p_matrix_certificate(lo, hi):
    """``(rows, signs, weights)`` — row ``rows[i]`` of the interval matrix ``[lo, hi]`` on the
    diagonal at column ``i``, times ``signs[i]``, with the columns scaled by ``weights`` — making
    every matrix of it strictly diagonally dominant by rows with a positive diagonal; ``None``
    if no permutation does. Such a matrix is a P-matrix (every principal submatrix is again
    dominant, hence has a positive determinant)."""
    n = lo.shape[0]
    magnitude = np.maximum(np.abs(lo), np.abs(hi))  # the largest |entry|
    for rows in itertools.permutations(range(n)):
        diag_lo, diag_hi = lo[list(rows), range(n)], hi[list(rows), range(n)]
        if not np.all((diag_lo > 0) | (diag_hi < 0)):
            continue  # a diagonal entry whose sign is not fixed over the box
        smallest = np.where(diag_lo > 0, diag_lo, -diag_hi)  # the least |diagonal entry|
        comparison = -magnitude[list(rows)]
        comparison[range(n), range(n)] = smallest
        if not np.all(np.isfinite(comparison)):
            continue
        try:
            weights = np.linalg.solve(comparison, np.ones(n))
        except np.linalg.LinAlgError:
            continue
        if not np.all(weights > 0):
            continue
        slack = comparison @ weights
        scale = np.abs(comparison) @ weights
        if np.all(slack > _MARGIN * scale):
            return list(rows), np.where(diag_lo > 0, 1.0, -1.0), weights
    return None


class NewtonBlock:
    """Newton's method on one square block whose root is certified unique (see the module)."""

    theta = ()
    max_iterations = 100
    max_halvings = 40

    def __init__(self, state, anchors, cones, leaves):
        self.anchors, self.leaves = list(anchors), list(leaves)
        self.eqns = sorted({e for cone in cones for e in cone}, key=state.order.__getitem__)
        self.supports = [state.supports.get(v) for v in self.leaves]
        self.known_inputs = known_operands(state, self.eqns)
        self.certificate = self._certify(state)
        names = ", ".join(map(repr, self.leaves))
        what = f"{len(self.anchors)} coupled relations" if len(self.anchors) > 1 else "a coupled relation"
        self.description = (f"Newton solve of {what} for {names} "
                            "(unique root: Gale–Nikaido certificate over the supports)")

    def _certify(self, state):
        def known_box(v):
            box = box_of(state.supports.get(v))
            return box if box is not None else (-np.inf, np.inf)

        boxes = [box_of(s) for s in self.supports]
        enclosure = jacobian_enclosure(self.eqns, self.leaves, boxes, [a.outs[0] for a in self.anchors],
                                       known_box, state.table)
        return None if enclosure is None else p_matrix_certificate(*enclosure)

    # -- run time ---------------------------------------------------------------------
    def _forward(self, known_env, xs):
        """The anchors' outputs, flattened and concatenated, at leaf values ``xs``."""
        env = dict(known_env)
        env.update(zip(self.leaves, xs))
        for e in self.eqns:
            (env[e.outs[0]],) = e.bind(*[read(env, v) for v in e.ins])
        return jnp.concatenate([jnp.ravel(env[a.outs[0]]) for a in self.anchors])

    def _split(self, flat):
        out, start = [], 0
        for v in self.leaves:
            out.append(flat[start:start + v.size].reshape(v.shape).astype(v.dtype))
            start += v.size
        return out

    def _to_support(self, u):
        """Leaf values from unconstrained coordinates ``u`` (flat): inside the supports."""
        return jnp.concatenate([
            jnp.ravel(biject_to(s if s is not None else constraints.real)(part))
            for s, part in zip(self.supports, self._split(u))])

    def _newton(self, g, u0):
        """Damped Newton on ``g(u) = 0``: the full step, halved until ``‖g‖`` decreases."""

        def merit(u):
            r = g(u)
            return jnp.sum(jnp.where(jnp.isfinite(r), r, jnp.inf) ** 2)

        def step(s):
            k, u, m, _ = s
            jac = jax.jacfwd(g)(u)
            delta = jnp.linalg.solve(jac, g(u))

            def shorter(t):
                return (t[0] < self.max_halvings) & ~(merit(u - t[1] * delta) < m)

            halvings, t = lax.while_loop(shorter, lambda t: (t[0] + 1, 0.5 * t[1]), (0, jnp.ones((), u.dtype)))
            moved = (halvings < self.max_halvings) & jnp.all(jnp.isfinite(delta))
            new = jnp.where(moved, u - t * delta, u)
            return k + 1, new, jnp.where(moved, merit(new), m), moved

        def going(s):
            k, _, m, moved = s
            return (k < self.max_iterations) & moved & (m > 0)

        _, u, _, _ = lax.while_loop(going, step, (0, u0, merit(u0), jnp.array(True)))
        return u

    def solve(self, known_env, observed, theta=()):
        dtype = jnp.result_type(*[v.dtype for v in self.leaves])
        y = jnp.concatenate([jnp.ravel(jnp.asarray(o)) for o in observed]).astype(dtype)
        n = y.shape[0]

        def residual(x):
            return self._forward(known_env, self._split(x)) - y

        def newton(f, x_guess):
            u = self._newton(lambda u: f(self._to_support(u).astype(dtype)), jnp.zeros((n,), dtype))
            return self._to_support(u).astype(dtype)

        def tangent_solve(linear, b):
            return jnp.linalg.solve(jax.jacfwd(linear)(b), b)

        x = lax.custom_root(residual, jnp.zeros((n,), dtype), newton, tangent_solve)
        xs = self._split(x)
        jac = jax.jacfwd(lambda t: self._forward(known_env, self._split(t)))(x)
        sign, log_abs = jnp.linalg.slogdet(jac)
        finfo = jnp.finfo(dtype)
        # a root to round-off: the residual at the scale of the terms of F at x
        scale = jnp.abs(y) + jnp.abs(jac) @ jnp.abs(x) + 1.0
        ok = jnp.all(jnp.abs(residual(x)) <= 256 * finfo.eps * scale) & jnp.all(jnp.isfinite(x)) & (sign != 0)
        for v, sup in zip(xs, self.supports):
            if is_constrained(sup):
                ok = ok & jnp.all(sup.check(v))
        return xs, -log_abs, ok

    def pgf(self, known_env, leaves):
        return ()
