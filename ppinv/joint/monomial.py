"""Coupled products and powers of positive unknowns: a log-linear solve.

``V = I·R`` and ``P = I²·R`` observed together: no single relation can be
solved, and freeing a variable would over-determine the other. But every
observation is a monomial ``yᵢ = cᵢ · Πⱼ xⱼ^Aᵢⱼ`` of positive unknowns ``xⱼ``
(products, quotients, integer and real powers, square and cube roots, with
known factors ``cᵢ``), so taking logarithms makes the system linear:

    log x = A⁻¹ (log|y| − log|c|),

exact and unique when ``A`` (constant exponents, read off the program) is
square and invertible, and the solution exists where every ``yᵢ / cᵢ`` is
positive (a domain flag). With ``x = exp(A⁻¹ (log y − log c))``,

    log|det ∂x/∂y| = Σ log x − Σ log|y| − n · log|det A|

(``n`` elements per relation). Power laws are common in science — Ohm's law
with Joule heating, allometric scaling, Cobb–Douglas production, dimensional
analysis — and so are systems of them.

The unknowns are the leaves of the monomial relations below the observed ones;
each must be positive by its support (``positive``, or an interval or
``greater_than`` with a nonnegative lower bound, the upper bound checked after
the solve). Relations between the leaves and the observations that other
relations also use are evaluated forward once the leaves are known.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..schedule.steps import read
from ..theta import is_constrained
from .base import Strategy, block_solve
from .cones import connected_groups, expand_cone, known_operands, nonnegative

_ROOTS = {lax.sqrt_p: 0.5, lax.rsqrt_p: -0.5, lax.cbrt_p: 1.0 / 3.0}
_PASS = {lax.convert_element_type_p} | ({lax.copy_p} if hasattr(lax, "copy_p") else set())
_MONOMIAL = {lax.mul_p, lax.div_p, lax.integer_pow_p, lax.pow_p, lax.neg_p} | set(_ROOTS) | _PASS
_SQUARE = getattr(lax, "square_p", None)
if _SQUARE is not None:
    _MONOMIAL.add(_SQUARE)
_MAX_UNKNOWNS = 16  # a log-linear system is solved by a dense inverse of its exponents


class Monomials(Strategy):
    name = "monomial"

    def candidates(self, state):
        found = {}
        for anchor in state.stalled():
            cone = _monomial_cone(state, anchor)
            if cone is not None:
                found[anchor] = cone
        for group in connected_groups(found):
            leaves = sorted({v for a in group for v in found[a][1]}, key=lambda v: v.id)
            if len(leaves) != len(group) or len(leaves) > _MAX_UNKNOWNS:
                continue
            block = MonomialBlock(state, group, found, leaves)
            if block.exponents is None:
                continue
            yield block_solve(block)


def _exponent(e):
    """The power of its unknown operand that a one-operand monomial relation applies."""
    if e.prim is lax.integer_pow_p:
        return float(e.params["y"])
    if e.prim is _SQUARE:
        return 2.0
    if e.prim in _ROOTS:
        return _ROOTS[e.prim]
    if e.prim is lax.pow_p:
        return float(np.asarray(e.ins[1].value))
    return 1.0  # neg, conversions


def _is_monomial(state, e):
    if e.prim not in _MONOMIAL or len(e.outs) != 1 or not e.outs[0].is_float:
        return False
    if e.prim is lax.convert_element_type_p and not e.ins[0].is_float:
        return False
    if e.prim is lax.pow_p:  # a known, constant, scalar exponent
        b = e.ins[1]
        return b.is_const and np.ndim(b.value) == 0 and not state.is_known(e.ins[0])
    return True


def _monomial_cone(state, anchor):
    """``(cone in program order, leaves)`` below ``anchor`` through monomial relations, every
    leaf a positive unknown of the anchor's shape; ``None`` otherwise."""
    if not _is_monomial(state, anchor) or not state.is_known(anchor.outs[0]):
        return None
    shape = anchor.outs[0].shape

    def accept(u, d):
        if u.shape != shape or not u.is_float:
            return None
        return _is_monomial(state, d)

    found = expand_cone(state, anchor, accept, max_leaves=_MAX_UNKNOWNS)
    if found is None:
        return None
    cone, leaves = found
    if any(u.shape != shape or not u.is_float or not nonnegative(state.supports.get(u)) for u in leaves):
        return None
    if len(leaves) < 2:  # one unknown: the polynomial and monotone solves
        return None
    if any(not state.is_known(v) and v.shape != shape for e in cone for v in e.ins):
        return None
    return cone, leaves


class MonomialBlock:
    """The log-linear solve of one group of monomial observations (see the module)."""

    theta = ()

    def __init__(self, state, anchors, found, leaves):
        self.anchors = list(anchors)
        self.leaves = list(leaves)
        self.cones = [found[a][0] for a in self.anchors]
        self.supports = [state.supports.get(v) for v in self.leaves]
        index = {v: j for j, v in enumerate(self.leaves)}
        self.known_inputs = known_operands(state, [e for cone in self.cones for e in cone])
        rows = []
        for cone in self.cones:
            powers = self._powers(cone, index, state)
            rows.append(powers[cone[-1].outs[0]])
        a = np.array(rows, dtype=np.float64)
        self.exponents = None
        if abs(np.linalg.det(a)) > 1e-9 * max(1.0, np.abs(a).max()) ** len(a):
            self.exponents = a
            self.inverse = np.linalg.inv(a)
            self.log_abs_det = float(np.linalg.slogdet(a)[1])
        names = ", ".join(map(repr, self.leaves))
        self.description = f"log-linear solve of {len(self.anchors)} monomial relations for {names}"

    def _powers(self, cone, index, state):
        """Exponent vectors (over the leaves) of every unknown variable of ``cone``."""
        powers = {v: np.eye(len(index))[j] for v, j in index.items()}
        for e in cone:
            p = [powers.get(v) for v in e.ins]
            if e.prim is lax.mul_p:
                out = sum(x for x in p if x is not None)
            elif e.prim is lax.div_p:
                out = (p[0] if p[0] is not None else 0) - (p[1] if p[1] is not None else 0)
            else:
                out = _exponent(e) * p[0]
            powers[e.outs[0]] = out
        return powers

    def _constant(self, cone, env):
        """``(log|c|, sign c, ok)`` of the known factor ``c`` of one monomial, and whether every
        root and real power on the way has a positive operand."""
        logc, sign, flags = {}, {}, []

        def get(v):
            if v in logc:
                return logc[v], sign[v]
            if v in self.leaves:
                return 0.0, 1.0
            x = read(env, v)
            return jnp.log(jnp.abs(x)), jnp.sign(x)

        for e in cone:
            (l0, s0), *rest = [get(v) for v in e.ins]
            if e.prim is lax.mul_p:
                l1, s1 = rest[0]
                out = (l0 + l1, s0 * s1)
            elif e.prim is lax.div_p:
                l1, s1 = rest[0]
                out = (l0 - l1, s0 * s1)
            elif e.prim is lax.neg_p:
                out = (l0, -s0)
            elif e.prim in _PASS:
                out = (l0, s0)
            else:
                k = _exponent(e)
                if e.prim is lax.integer_pow_p or e.prim is _SQUARE:
                    out = (k * l0, s0 ** int(k))
                else:  # a root or a real power of a negative value has no real solution
                    flags.append(s0 > 0)
                    out = (k * l0, jnp.ones_like(s0) if e.prim is not lax.cbrt_p else s0)
            logc[e.outs[0]], sign[e.outs[0]] = out
        y = cone[-1].outs[0]
        return logc[y], sign[y], flags

    def solve(self, known_env, observed, theta):
        env = dict(known_env)
        rhs, flags, log_y = [], [], []
        for cone, y in zip(self.cones, observed):
            logc, sign, ok = self._constant(cone, env)
            flags.extend(ok)
            flags.append(sign * y > 0)  # y / c must be positive
            log_y.append(jnp.log(jnp.abs(y)))
            rhs.append(log_y[-1] - logc)
        log_x = jnp.tensordot(jnp.asarray(self.inverse, observed[0].dtype), jnp.stack(rhs), axes=1)
        xs = [jnp.exp(lx) for lx in log_x]
        for x, sup in zip(xs, self.supports):
            if is_constrained(sup):
                flags.append(sup.check(x))
        size = observed[0].size
        log_det = jnp.sum(log_x) - sum(jnp.sum(ly) for ly in log_y) - size * self.log_abs_det
        ok = jnp.all(jnp.stack([jnp.all(f) for f in flags]))
        return xs, log_det, ok

    def pgf(self, known_env, leaves):
        return ()
