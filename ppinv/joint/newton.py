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
  and so is ``S·P·J`` (positive column weights keep the P-property): ``S·P·F``
  has a P-matrix Jacobian on a rectangle, and by the Gale–Nikaido theorem it is
  injective there, so ``F`` is, on the whole box. Where the enclosure over the
  whole box is too loose, a bounded box is cut into pieces (up to 64) and the
  certificate shown on each, with the same ``P`` and ``S`` (the weights may
  differ).

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
_MAX_PIECES = 64  # a bounded box is cut into at most this many pieces for its certificate
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
    return next(_certificates(lo, hi), None)


def _certificates(lo, hi):
    """Every ``(rows, signs, weights)`` of :func:`p_matrix_certificate`, one per permutation."""
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
            yield list(rows), np.where(diag_lo > 0, 1.0, -1.0), weights


def certify_over_pieces(enclose, box):
    """A certificate that ``F`` is injective on ``box`` (``(lo, hi)`` per unknown entry):
    ``(rows, signs)`` such that on every piece of a cover of the box, the enclosure
    ``enclose(piece)`` of ``J_F`` has a certificate of :func:`p_matrix_certificate` with these
    rows and signs (its weights may differ from piece to piece). Positive column weights keep
    the P-property, so ``S·P·J_F`` is a P-matrix all over the box: ``S·P·F`` and ``F`` are
    injective on it (Gale–Nikaido). The whole box is tried first, then covers cut one entry
    at a time (as ``_monotone`` cuts a support), up to :data:`_MAX_PIECES` pieces; ``None`` if
    none certifies."""
    pieces = [list(box)]
    while pieces is not None and len(pieces) <= _MAX_PIECES:
        common = None
        for piece in pieces:
            enclosure = enclose(piece)
            found = set() if enclosure is None else {
                (tuple(rows), tuple(signs)) for rows, signs, _ in _certificates(*enclosure)}
            common = found if common is None else common & found
            if not common:
                break
        if common:
            rows, signs = min(common)
            return list(rows), np.asarray(signs)
        pieces = _finer(pieces)
    return None


def _finer(pieces):
    """Each piece cut in two along its widest bounded entry (``None`` once none can be cut)."""
    finer = []
    for piece in pieces:
        widths = [hi - lo if np.isfinite(hi - lo) else -1.0 for lo, hi in piece]
        j = int(np.argmax(widths))
        if widths[j] <= 0:
            return None
        lo, hi = piece[j]
        cut = 0.5 * lo + 0.5 * hi
        finer += [piece[:j] + [(lo, cut)] + piece[j + 1:], piece[:j] + [(cut, hi)] + piece[j + 1:]]
    return finer


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

        outputs = [a.outs[0] for a in self.anchors]
        box = []  # (lo, hi) of every unknown entry, the leaves flattened in order
        for v, sup in zip(self.leaves, self.supports):
            lo, hi = (np.broadcast_to(np.asarray(b, float), v.shape).ravel() for b in box_of(sup))
            box += list(zip(lo.tolist(), hi.tolist()))

        def enclose(piece):
            boxes, start = [], 0
            for v in self.leaves:
                part = np.array(piece[start:start + v.size], dtype=float).reshape(v.shape + (2,))
                boxes.append((part[..., 0], part[..., 1]))
                start += v.size
            return jacobian_enclosure(self.eqns, self.leaves, boxes, outputs, known_box, state.table)

        return certify_over_pieces(enclose, box)

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
