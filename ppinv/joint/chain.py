"""Planar chains: two angles from an end point (two-link inverse kinematics).

An arm of links of known lengths ``rᵢ`` at angles ``αᵢ`` reaches

    X = K_x + Σ rᵢ cos αᵢ,   Y = K_y + Σ rᵢ sin αᵢ,

where the angles are integer combinations of unknown joint angles (absolute
angles ``αᵢ = qᵢ``, or relative ones ``α = cumsum(q)``) plus known offsets.
Observing ``(X, Y)`` leaves ``n − 2`` joints free: all but the last two become
θ, and the last two links are solved in closed form. With the end point of the
last two links ``p = (X, Y) − K − Σ_{known} rᵢ e(αᵢ)``, ``δ = α₂ − α₁``:

    cos δ = (|p|² − r₁² − r₂²) / (2 r₁ r₂)          (the domain: |cos δ| < 1)
    δ = ±acos(cos δ) + 2πm                            (θ: the elbow, the turn m)
    α₁ = atan2(p_y, p_x) − atan2(r₂ sin δ, r₁ + r₂ cos δ) + 2πk

and the two joints from ``(α₁, δ)`` by the integer matrix of the chain (which must
be unimodular, so whole turns stay whole turns). By the block structure of the
map (θ passes through),

    log|det ∂q/∂(X, Y, θ)| = −log|r₁ r₂ sin δ|.

A joint whose support is an interval of width at most 2π needs no turn count:
its one representative in the support is taken (and checked); otherwise an
integer θ counts the turns. The chain is found in what users write: sums of
``l * cos(t)`` terms, or ``jnp.sum(lengths * jnp.cos(jnp.cumsum(q)))``, with the
two coordinates as separate outputs or stacked.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._compat import is_concrete
from ..schedule.steps import read
from ..theta import ThetaSpec, int_dtype, integer, is_constrained, sign
from .base import Strategy, block_solve

TWO_PI = 2 * math.pi
_STACKS = {lax.concatenate_p} | ({lax.stack_p} if hasattr(lax, "stack_p") else set())


class _NoChain(Exception):
    pass


# --- parsing: observed coordinates as sums of r·cos(α) / r·sin(α) ------------------------
class Term:
    """``sign · Π factors · trig(angle[index])``; factors are ``(var, index | None)`` known values."""

    def __init__(self, kind, angle, index, factors=(), negative=False):
        self.kind, self.angle, self.index = kind, angle, index
        self.factors, self.negative = tuple(factors), negative

    def scaled(self, factor):
        return Term(self.kind, self.angle, self.index, self.factors + (factor,), self.negative)

    def negated(self):
        return Term(self.kind, self.angle, self.index, self.factors, not self.negative)

    def radius(self, env):
        r = jnp.asarray(-1.0 if self.negative else 1.0)
        for v, i in self.factors:
            x = read(env, v)
            r = r * (x if i is None else jnp.reshape(x, (-1,))[i])
        return r

    def radius_key(self):
        return (self.negative, tuple(sorted((id(v) if not v.is_const else repr(np.asarray(v.value).tolist()), i)
                                            for v, i in self.factors)))


def _entries(v):
    return list(range(v.size)) if v.shape else [None]


def _trig_terms(state, z, index=None, through=False):
    """``(terms, offsets)`` of the scalar (or entry ``index`` of) ``z``; ``_NoChain`` otherwise.

    ``through``: parse ``z`` by its definition even though it is known (an observed coordinate)."""
    if state.is_known(z) and not through:
        return [], [(z, index, False)]
    d = state.definer.get(z)
    if d is None or d not in state.pending or len(d.outs) != 1:
        raise _NoChain
    p = d.prim
    if p in (lax.cos_p, lax.sin_p):
        return [Term("cos" if p is lax.cos_p else "sin", d.ins[0], index)], []
    if p is lax.reduce_sum_p:
        if index is not None or len(d.ins[0].shape) != 1:
            raise _NoChain
        terms, offsets = [], []
        for i in range(d.ins[0].shape[0]):
            t, o = _trig_terms(state, d.ins[0], i)
            terms += t
            offsets += o
        return terms, offsets
    if p in (lax.add_p, lax.sub_p):
        terms, offsets = [], []
        # the right operand first: a long left-associated sum (x₀ + x₁ + …) is rejected at its
        # last term instead of after a walk down the whole chain
        for k, v in reversed(list(enumerate(d.ins))):
            t, o = _trig_terms(state, v, _broadcast_index(v, index))
            negative = p is lax.sub_p and k == 1
            terms += [s.negated() if negative else s for s in t]
            offsets += [(ov, oi, neg ^ negative) for ov, oi, neg in o]
        return terms, offsets
    if p is lax.neg_p:
        t, o = _trig_terms(state, d.ins[0], index)
        return [s.negated() for s in t], [(ov, oi, not neg) for ov, oi, neg in o]
    if p is lax.mul_p:
        known = [state.is_known(v) for v in d.ins]
        if known.count(True) != 1:
            raise _NoChain
        k, w = (d.ins[0], d.ins[1]) if known[0] else (d.ins[1], d.ins[0])
        t, o = _trig_terms(state, w, _broadcast_index(w, index))
        if o:
            raise _NoChain  # a known factor times a known offset: not a chain term
        return [s.scaled((k, _broadcast_index(k, index))) for s in t], []
    raise _NoChain


def _broadcast_index(v, index):
    return None if not v.shape else index


def _coordinates(state):
    """Observed scalar coordinates: ``(reader, relation to finish or None, var)`` for every stalled
    relation whose output is a known scalar, or a known stack of scalars."""
    found = []
    for e in state.stalled():
        if e.prim in _STACKS and all(v.shape == () or v.shape == (1,) for v in e.ins) and e.outs[0].shape:
            out = e.outs[0]
            if not state.is_known(out):
                continue
            for i, v in enumerate(e.ins):
                if not state.is_known(v):
                    found.append((lambda env, out=out, i=i: jnp.reshape(read(env, out), (-1,))[i], e, v))
        elif len(e.outs) == 1 and e.outs[0].shape == () and state.is_known(e.outs[0]):
            found.append((lambda env, out=e.outs[0]: read(env, out), e, None))
    return found


# --- angles: integer combinations of unknown joint entries plus known offsets -------------
class Angles:
    """Angle expressions over the unknown joint entries ``(var, index)``."""

    def __init__(self, state):
        self.state = state
        self.entries = []  # unknown joint entries, in order of first use
        self.known = []  # known variables the offsets read
        self._memo = {}

    def of(self, v):
        """``(C, offset)`` of variable ``v``: ``C`` maps joint entries to its entries (a dict per
        entry: joint entry -> integer), ``offset(env)`` its known part."""
        if v in self._memo:
            return self._memo[v]
        st = self.state
        if st.is_known(v):
            if not v.is_const and v not in self.known:
                self.known.append(v)
            out = ([{} for _ in _entries(v)], lambda env, v=v: jnp.reshape(read(env, v), (-1,)))
        else:
            d = st.definer.get(v)
            if d is None or d not in st.pending:  # an unknown joint angle (an input or an intermediate)
                if not v.is_float or len(v.shape) > 1:
                    raise _NoChain
                cols = []
                for i in _entries(v):
                    self.entries.append((v, i))
                    cols.append({(v, i): 1})
                out = (cols, lambda env, n=v.size: jnp.zeros((n,)))
            elif d.prim in (lax.add_p, lax.sub_p):
                (ca, oa), (cb, ob) = (self.of(u) for u in d.ins)
                s = -1 if d.prim is lax.sub_p else 1
                ca, cb = _broadcast(ca, v.size), _broadcast(cb, v.size)
                cols = [_combine(a, b, s) for a, b in zip(ca, cb)]
                out = (cols, lambda env, oa=oa, ob=ob, s=s, n=v.size: _bcast(oa(env), n) + s * _bcast(ob(env), n))
            elif d.prim is lax.neg_p:
                c, o = self.of(d.ins[0])
                out = ([{k: -x for k, x in col.items()} for col in c], lambda env, o=o: -o(env))
            elif d.prim is lax.cumsum_p and len(v.shape) == 1 and not d.params.get("reverse"):
                c, o = self.of(d.ins[0])
                cols, acc = [], {}
                for col in c:
                    acc = _combine(acc, col, 1)
                    cols.append(acc)
                out = (cols, lambda env, o=o: jnp.cumsum(o(env)))
            elif d.prim is lax.convert_element_type_p and d.ins[0].is_float:
                out = self.of(d.ins[0])
            else:
                raise _NoChain
        self._memo[v] = out
        return out


def _combine(a, b, s):
    out = dict(a)
    for k, x in b.items():
        out[k] = out.get(k, 0) + s * x
    return {k: x for k, x in out.items() if x != 0}


def _broadcast(cols, n):
    return cols * n if len(cols) == 1 and n > 1 else cols


def _bcast(x, n):
    return jnp.broadcast_to(x, (n,)) if x.shape[0] == 1 and n > 1 else x


def _period_free(sup):
    """``(lo, hi)`` when the support is an interval of width ≤ 2π (one representative per turn)."""
    lo, hi = getattr(sup, "lower_bound", None), getattr(sup, "upper_bound", None)
    if lo is None or hi is None or not (is_concrete(lo) and is_concrete(hi)):
        return None
    if np.ndim(lo) or np.ndim(hi):
        return None
    lo, hi = float(lo), float(hi)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and hi - lo <= TWO_PI + 1e-12 else None


# --- the strategy --------------------------------------------------------------------------
class PlanarChains(Strategy):
    name = "chain"

    def candidates(self, state):
        coords = _coordinates(state)
        parsed = []
        for reader, anchor, var in coords:
            try:
                if var is not None:  # one coordinate of a stack
                    terms, offsets = _trig_terms(state, var)
                else:  # a coordinate observed on its own: parsed by the relation that computes it
                    terms, offsets = _trig_terms(state, anchor.outs[0], through=True)
            except _NoChain:
                continue
            kinds = {t.kind for t in terms}
            if len(terms) >= 2 and len(kinds) == 1:
                parsed.append((reader, anchor, kinds.pop(), terms, offsets))
        for xs in (p for p in parsed if p[2] == "cos"):
            for ys in (p for p in parsed if p[2] == "sin"):
                block = _chain_block(state, xs, ys)
                if block is None:
                    continue
                yield block_solve(block, hints=block.hints)


def _angle_key(state, v):
    """Angles computed alike are the same angle (``t1 + t2`` traced once for the cosine and once
    for the sine)."""
    d = state.definer.get(v)
    if state.is_known(v) or d is None or d not in state.pending or d.prim not in _ANGLE_OPS:
        return ("var", id(v)) if not v.is_const else ("const", repr(np.asarray(v.value).tolist()))
    return (d.prim.name, repr(sorted(d.params.items())), tuple(_angle_key(state, u) for u in d.ins))


_ANGLE_OPS = {lax.add_p, lax.sub_p, lax.neg_p, lax.cumsum_p, lax.convert_element_type_p}


def _chain_block(state, xs, ys):
    _, _, _, tx, ox = xs
    _, _, _, ty, oy = ys
    def key(t):
        return (_angle_key(state, t.angle), t.index, t.radius_key())

    if sorted(map(key, tx), key=repr) != sorted(map(key, ty), key=repr):
        return None
    angles = Angles(state)
    try:
        rows = []
        for t in tx:
            cols, offset = angles.of(t.angle)
            rows.append((t, cols[t.index or 0], offset))
    except _NoChain:
        return None
    entries = angles.entries
    if len(entries) < 2:
        return None
    leaves = list(dict.fromkeys(v for v, _ in entries))
    if sum(v.size for v in leaves) != len(entries):
        return None  # a joint vector only partly in the chain
    solved = entries[-2:]
    moving = [r for r in rows if any(e in r[1] for e in solved)]
    if len(moving) != 2:
        return None
    # the inner link first (it moves with fewer of the two joints, or with the earlier one), so
    # that the elbow θ means the same whichever order the sum was written in: 0 for δ ≥ 0
    moving.sort(key=lambda r: (sum(e in r[1] for e in solved), min(solved.index(e) for e in solved if e in r[1])))
    m = np.array([[r[1].get(e, 0) for e in solved] for r in moving], dtype=np.int64)
    if abs(round(np.linalg.det(m))) != 1:
        return None
    known = list(angles.known)
    for t in tx:
        known += [v for v, _ in t.factors if not v.is_const]
    known += [v for v, _, _ in ox + oy if not v.is_const]
    return ChainBlock(state, xs, ys, rows, moving, entries, solved, m, leaves, list(dict.fromkeys(known)))


class ChainBlock:
    """The closed-form solve of one planar chain (see the module)."""

    def __init__(self, state, xs, ys, rows, moving, entries, solved, matrix, leaves, known):
        self.anchors = list(dict.fromkeys([xs[1], ys[1]]))
        self.read_x, self.read_y = xs[0], ys[0]
        self.offsets_x, self.offsets_y = xs[4], ys[4]
        self.rows, self.moving = rows, moving
        self.entries, self.solved = entries, solved
        self.free = [e for e in entries if e not in solved]
        self.matrix_inverse = np.round(np.linalg.inv(matrix)).astype(np.int64)
        self.leaves = leaves
        self.known_inputs = known
        dtype = leaves[0].dtype
        self.theta, self.hints, self.turns = [], [], []
        if self.free:
            self.theta.append(ThetaSpec((len(self.free),), dtype, _free_support(state, self.free), "value",
                                        "free joints of the chain"))
            self.hints.append("chain_joints")
        self.theta.append(ThetaSpec((), np.dtype(int_dtype()), sign, "sign", "elbow"))
        self.hints.append("elbow")
        for v, i in solved:
            span = _period_free(state.supports.get(v))
            self.turns.append(span)
            if span is None:
                joint = state.names.get(v, "joint") + (f"_{i}" if i is not None else "")
                self.theta.append(ThetaSpec((), np.dtype(int_dtype()), integer, "period", f"turns of {joint}"))
                self.hints.append(f"turns_{joint}")
        self.supports = [state.supports.get(v) for v in leaves]
        names = ", ".join(f"{state.names.get(v, repr(v))}" + (f"[{i}]" if i is not None else "") for v, i in solved)
        self.description = f"planar chain: {names} from the end point (two-link inverse kinematics)"

    def _end_point(self, env):
        """The observed coordinates less their known offsets."""
        x = self.read_x(env) - sum((_offset(env, o) for o in self.offsets_x), 0.0)
        y = self.read_y(env) - sum((_offset(env, o) for o in self.offsets_y), 0.0)
        return x, y

    def solve(self, known_env, observed, theta):
        env = dict(known_env)
        for e, val in zip(self.anchors, observed):
            env[e.outs[0]] = val
        theta = list(theta)
        joints = {}
        if self.free:
            free = theta.pop(0)
            for k, e in enumerate(self.free):
                joints[e] = free[k]
        elbow = theta.pop(0)
        x, y = self._end_point(env)
        # the known links, at the angles the free joints give
        for t, col, offset in self.rows:
            if any(e in col for e in self.solved):
                continue
            a = _angle(col, offset, env, joints, t.index)
            x = x - t.radius(env) * jnp.cos(a)
            y = y - t.radius(env) * jnp.sin(a)
        (t1, col1, off1), (t2, col2, off2) = self.moving
        r1, r2 = t1.radius(env), t2.radius(env)
        c = (x * x + y * y - r1 * r1 - r2 * r2) / (2 * r1 * r2)
        inside = jnp.abs(c) < 1
        s = 1 - 2 * elbow.astype(c.dtype)
        delta = s * jnp.arccos(jnp.where(inside, c, 0.0))
        alpha1 = jnp.arctan2(y, x) - jnp.arctan2(r2 * jnp.sin(delta), r1 + r2 * jnp.cos(delta))
        # the two moving angles without the solved joints' part
        base1 = _angle(col1, off1, env, joints, t1.index, skip=self.solved)
        base2 = _angle(col2, off2, env, joints, t2.index, skip=self.solved)
        target = jnp.stack([alpha1 - base1, alpha1 + delta - base2])
        solved = jnp.asarray(self.matrix_inverse, target.dtype) @ target
        flags = [inside]
        for k, (entry, span) in enumerate(zip(self.solved, self.turns)):
            if span is None:
                solved = solved.at[k].add(TWO_PI * theta.pop(0))
            else:
                lo, hi = span
                solved = solved.at[k].set(lo + jnp.mod(solved[k] - lo, TWO_PI))
                flags.append((solved[k] > lo) & (solved[k] < hi))
            joints[entry] = solved[k]
        values = [_assemble(v, joints) for v in self.leaves]
        for value, sup in zip(values, self.supports):
            if is_constrained(sup):
                flags.append(jnp.all(sup.check(value)))
        log_det = -jnp.log(jnp.abs(r1 * r2 * jnp.sin(delta)))
        return values, log_det, jnp.all(jnp.stack([jnp.all(f) for f in flags]))

    def pgf(self, known_env, leaves):
        env = dict(known_env)
        joints = {}
        for v, val in zip(self.leaves, leaves):
            flat = jnp.reshape(val, (-1,))
            for i in _entries(v):
                joints[(v, i)] = flat[i or 0]
        out = []
        if self.free:
            out.append(jnp.stack([joints[e] for e in self.free]))
        (t1, col1, off1), (t2, col2, off2) = self.moving
        a1 = _angle(col1, off1, env, joints, t1.index)
        a2 = _angle(col2, off2, env, joints, t2.index)
        r1, r2 = t1.radius(env), t2.radius(env)
        delta = a2 - a1
        wrapped = jnp.arctan2(jnp.sin(delta), jnp.cos(delta))
        elbow = jnp.where(wrapped >= 0, 0, 1)
        out.append(elbow.astype(int_dtype()))
        # the principal solution of this branch, then the whole turns between it and the joints
        s = 1 - 2 * elbow.astype(wrapped.dtype)
        c = jnp.cos(delta)
        d0 = s * jnp.arccos(jnp.clip(c, -1.0, 1.0))
        x = r1 * jnp.cos(a1) + r2 * jnp.cos(a2)
        y = r1 * jnp.sin(a1) + r2 * jnp.sin(a2)
        alpha1 = jnp.arctan2(y, x) - jnp.arctan2(r2 * jnp.sin(d0), r1 + r2 * jnp.cos(d0))
        base1 = _angle(col1, off1, env, joints, t1.index, skip=self.solved)
        base2 = _angle(col2, off2, env, joints, t2.index, skip=self.solved)
        principal = jnp.asarray(self.matrix_inverse, alpha1.dtype) @ jnp.stack([alpha1 - base1, alpha1 + d0 - base2])
        for k, (entry, span) in enumerate(zip(self.solved, self.turns)):
            if span is None:
                out.append(jnp.round((joints[entry] - principal[k]) / TWO_PI).astype(int_dtype()))
        return tuple(out)


def _free_support(state, free):
    """θ's support for the freed joints: their common elementwise support (else the reals, the
    supports then checked after the solve)."""
    sups = []
    for v, _ in free:
        sup = state.supports.get(v)
        sup = getattr(sup, "base_constraint", sup)  # independent(real, 1) of a vector site
        if sup is None or getattr(sup, "event_dim", 0) != 0:
            return constraints.real
        sups.append(sup)
    return sups[0] if all(s is sups[0] for s in sups) else constraints.real


def _offset(env, offset):
    v, i, negative = offset
    x = read(env, v)
    x = x if i is None else jnp.reshape(x, (-1,))[i]
    return -x if negative else x


def _angle(col, offset, env, joints, index, skip=()):
    a = jnp.reshape(offset(env), (-1,))[index or 0]
    for e, k in col.items():
        if e not in skip:
            a = a + k * joints[e]
    return a


def _assemble(v, joints):
    if not v.shape:
        return joints[(v, None)]
    return jnp.stack([joints[(v, i)] for i in range(v.size)]).reshape(v.shape)
