"""The closed-form solve of one planar chain: the last two links from the end point (the elbow and
turns in θ, the other joints free), its log|det| and its PGF (:class:`ChainBlock`)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from ...schedule.steps import read
from ...theta import ThetaSpec, int_dtype, integer, is_constrained, sign
from .angles import _period_free
from .terms import TWO_PI, _entries


class ChainBlock:
    """The closed-form solve of one planar chain (see the package notes)."""

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
            span = _period_free(state.supports.get(v), v.shape, i)
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
    """θ's support for the freed joints: their common elementwise support, or intervals read entry
    by entry when the bounds are per entry (else the reals, the supports then checked after the solve)."""
    sups = []
    for v, _ in free:
        sup = state.supports.get(v)
        while isinstance(sup, constraints.independent):  # independent(real, 1) of a vector site
            sup = sup.base_constraint
        if sup is None or getattr(sup, "event_dim", 0) != 0:
            return constraints.real
        sups.append(sup)
    if all(s is sups[0] for s in sups) and all(np.ndim(getattr(sups[0], b, 0.0)) == 0
                                               for b in ("lower_bound", "upper_bound")):
        return sups[0]
    if not all(isinstance(s, type(constraints.interval(0.0, 1.0))) for s in sups):
        return constraints.real
    try:
        bounds = [[_entry_of(getattr(s, b), v.shape, i) for s, (v, i) in zip(sups, free)]
                  for b in ("lower_bound", "upper_bound")]
    except (ValueError, TypeError):  # traced or mismatched bounds
        return constraints.real
    return constraints.interval(jnp.asarray(bounds[0]), jnp.asarray(bounds[1]))


def _entry_of(bound, shape, index):
    return np.broadcast_to(np.asarray(bound, np.float64), shape).reshape(-1)[0 if index is None else index]


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
