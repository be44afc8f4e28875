"""Coupled linear-fractional relations: ``yᵢ = Nᵢ(x) / Dᵢ(x)`` with ``N``, ``D`` affine in the unknowns.

Michaelis–Menten rates observed at several substrate concentrations,
``vᵢ = Vmax·Sᵢ / (Km + Sᵢ)``, determine ``(Vmax, Km)``, but no relation can be
solved alone: each uses both unknowns, one in a denominator. Clearing the
denominators makes the system linear in the unknowns, with coefficients that
depend on the observations:

    Fᵢ(x) = yᵢ·Dᵢ(x) − Nᵢ(x) = 0,   i.e.   M(y) x = r(y),

unique where ``M`` is invertible; the solution is a preimage where every
denominator on the way is non-zero (a domain flag). By the implicit function
theorem (``∂F/∂x = M``, ``∂Fᵢ/∂yᵢ = Dᵢ(x)``)

    log|det ∂x/∂y| = Σᵢ log|Dᵢ(x)| − log|det M|.

The relations between the unknowns and the observations are sums, differences,
products and quotients in which every product has a known factor (so numerator
and denominator stay affine), negations, conversions and broadcasts of scalar
unknowns. Unknowns are scalars or of the observation's shape (element by
element); the system is square (as many observed entries as unknown entries).
Langmuir isotherms, weighted means with unknown weights and Möbius maps of
several variables are systems of the same kind.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..schedule.steps import read
from ..theta import is_constrained
from .base import Strategy, block_solve
from .cones import connected_groups, expand_cone, known_operands

_PASS = {lax.convert_element_type_p, lax.broadcast_in_dim_p} | ({lax.copy_p} if hasattr(lax, "copy_p") else set())
_OPS = {lax.add_p, lax.sub_p, lax.mul_p, lax.div_p, lax.neg_p} | _PASS
_MAX_ENTRIES = 32  # the system is solved densely


class _NotAffine(Exception):
    pass


class Affine:
    """``const + Σ coeffs[leaf] · leaf`` (arrays broadcasting to the variable's shape)."""

    def __init__(self, const, coeffs=None):
        self.const, self.coeffs = const, dict(coeffs or {})

    @property
    def is_const(self):
        return not self.coeffs

    def __add__(self, other):
        coeffs = dict(self.coeffs)
        for v, c in other.coeffs.items():
            coeffs[v] = coeffs[v] + c if v in coeffs else c
        return Affine(self.const + other.const, coeffs)

    def __neg__(self):
        return Affine(-self.const, {v: -c for v, c in self.coeffs.items()})

    def __sub__(self, other):
        return self + (-other)

    def __mul__(self, other):
        if not self.is_const and not other.is_const:
            raise _NotAffine
        if self.is_const:
            self, other = other, self
        k = other.const
        return Affine(self.const * k, {v: c * k for v, c in self.coeffs.items()})

    def at(self, values):
        return self.const + sum((c * values[v] for v, c in self.coeffs.items()), 0.0)


class FractionalSystems(Strategy):
    name = "fractional"

    def candidates(self, state):
        found = {}
        for anchor in state.stalled():
            cone = _fractional_cone(state, anchor)
            if cone is not None:
                found[anchor] = cone
        for group in connected_groups(found):
            leaves = sorted({v for a in group for v in found[a][1]}, key=lambda v: v.id)
            rows = sum(a.outs[0].size for a in group)
            if rows != sum(v.size for v in leaves) or rows > _MAX_ENTRIES:
                continue
            if not all(_affine_ratios(found[a][0], found[a][1]) for a in group):
                continue
            block = FractionalBlock(state, group, [found[a][0] for a in group], leaves)
            if not block._generically_invertible():
                continue
            yield block_solve(block)


def _fractional_cone(state, anchor):
    """``(cone in program order, leaves)`` below ``anchor`` through linear-fractional relations,
    with at least two unknowns (one unknown is the polynomial solve's); ``None`` otherwise."""
    out = anchor.outs[0] if len(anchor.outs) == 1 else None
    if out is None or not out.is_float or anchor.prim not in _OPS or not state.is_known(out):
        return None

    def accept(u, d):
        if not u.is_float or u.shape not in ((), out.shape):
            return None
        return d.prim in _OPS

    found = expand_cone(state, anchor, accept, max_leaves=_MAX_ENTRIES)
    if found is None:
        return None
    cone, leaves = found
    if any(not u.is_float or u.shape not in ((), out.shape) for u in leaves):
        return None
    if len(leaves) < 2 or any(e.prim is lax.broadcast_in_dim_p and e.ins[0].shape != () for e in cone):
        return None
    if not any(e.prim is lax.div_p and not state.is_known(e.ins[1]) for e in cone):
        return None  # no unknown denominator: linear, the linear blocks' case
    return cone, leaves


def _affine_ratios(cone, leaves) -> bool:
    """Numerators and denominators stay affine through ``cone`` (its structure alone decides:
    known values are placeholders here)."""
    try:
        _ratios(cone, leaves, lambda v: np.ones(v.shape) if not v.is_const else np.asarray(v.value))
    except _NotAffine:
        return False
    return True


def _ratios(cone, leaves, value_of):
    """``{variable: (N, D)}`` over ``cone`` (program order), or :class:`_NotAffine`; also the
    divisors ``(N, D)`` of every quotient on the way (they must not vanish)."""
    ratio, divisors = {}, []

    def get(v):
        if v in ratio:
            return ratio[v]
        if v in leaves:
            return Affine(0.0, {v: 1.0}), Affine(1.0)
        return Affine(value_of(v)), Affine(1.0)

    for e in cone:
        args = [get(v) for v in e.ins]
        p = e.prim
        if p is lax.add_p or p is lax.sub_p:
            (n1, d1), (n2, d2) = args
            n2 = -n2 if p is lax.sub_p else n2
            out = (n1 * d2 + n2 * d1, d1 * d2)
        elif p is lax.mul_p:
            (n1, d1), (n2, d2) = args
            out = (n1 * n2, d1 * d2)
        elif p is lax.div_p:
            (n1, d1), (n2, d2) = args
            divisors.append((n2, d2))
            out = (n1 * d2, d1 * n2)
        elif p is lax.neg_p:
            n, d = args[0]
            out = (-n, d)
        else:  # conversions and broadcasts of scalars: the same affine forms
            out = args[0]
        ratio[e.outs[0]] = out
    return ratio, divisors


class FractionalBlock:
    """The linear solve of one group of linear-fractional observations (see the module)."""

    theta = ()

    def __init__(self, state, anchors, cones, leaves):
        self.anchors, self.cones, self.leaves = list(anchors), cones, list(leaves)
        self.supports = [state.supports.get(v) for v in self.leaves]
        self.known_inputs = known_operands(state, [e for cone in cones for e in cone])
        names = ", ".join(map(repr, self.leaves))
        self.description = f"linear solve of {len(self.anchors)} linear-fractional relations for {names}"

    def system(self, value_of, observed, dtype):
        """``(M, r, denominators, divisors)`` of the equations ``M x = r`` at these values."""
        blocks, rhs, denominators, divisors = [], [], [], []
        leaf_set = set(self.leaves)
        for cone, y in zip(self.cones, observed):
            ratio, divs = _ratios(cone, leaf_set, value_of)
            n, d = ratio[cone[-1].outs[0]]
            f = Affine(y, {}) * d - n  # y·D − N = 0
            blocks.append([_columns(f.coeffs.get(v, 0.0), v, y.shape, dtype) for v in self.leaves])
            rhs.append(-jnp.broadcast_to(f.const, y.shape).ravel())
            denominators.append(d)
            divisors.extend(divs + [(d, Affine(1.0))])
        m = jnp.concatenate([jnp.concatenate(row, axis=1) for row in blocks], axis=0)
        return m, jnp.concatenate(rhs), denominators, divisors

    def _generically_invertible(self):
        """At random points of the program (unknowns and known inputs drawn at random), ``M`` at
        the observations they give is invertible. Observations that are functions of each other
        (``a/(b+1)`` and ``2a/(b+1)``) make it singular wherever they are feasible: refused."""
        rng = np.random.default_rng(0)
        leaf_set = set(self.leaves)
        for _ in range(2):
            values = {v: rng.uniform(0.5, 1.5, v.shape) for v in self.known_inputs + self.leaves}

            def value_of(v):
                return np.asarray(v.value) if v.is_const else values[v]

            observed = []
            for cone in self.cones:
                n, d = _ratios(cone, leaf_set, value_of)[0][cone[-1].outs[0]]
                observed.append(np.broadcast_to(n.at(values) / d.at(values), cone[-1].outs[0].shape))
            m = np.asarray(self.system(value_of, observed, np.float64)[0])
            if np.linalg.cond(m) > 1e10:
                return False
        return True

    def solve(self, known_env, observed, theta):
        dtype = observed[0].dtype
        m, r, denominators, divisors = self.system(
            lambda v: jnp.asarray(read(known_env, v), dtype), observed, dtype)
        x_flat = jnp.linalg.solve(m, r)
        xs, start = {}, 0
        for v in self.leaves:
            xs[v] = x_flat[start:start + v.size].reshape(v.shape)
            start += v.size
        flags = [jnp.abs(jnp.linalg.det(m)) > 0]
        for n, d in divisors:  # every quotient on the way is defined at the solution
            flags += [n.at(xs) != 0, d.at(xs) != 0]
        for v, sup in zip(self.leaves, self.supports):
            if is_constrained(sup):
                flags.append(sup.check(xs[v]))
        log_d = sum(jnp.sum(jnp.log(jnp.abs(jnp.broadcast_to(d.at(xs), y.shape))))
                    for d, y in zip(denominators, observed))
        log_det = log_d - jnp.linalg.slogdet(m)[1]
        ok = jnp.all(jnp.stack([jnp.all(f) for f in flags]))
        return [xs[v] for v in self.leaves], log_det, ok

    def pgf(self, known_env, leaves):
        return ()


def _columns(coeff, leaf, shape, dtype):
    """The block of ``M``: rows the entries of an observation of ``shape``, columns those of ``leaf``."""
    c = jnp.broadcast_to(jnp.asarray(coeff, dtype), shape).ravel()
    if leaf.shape == ():
        return c[:, None]
    return jnp.diag(c)
