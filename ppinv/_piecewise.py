"""Piecewise functions: ``jnp.where(pred(x), f1(x), f0(x))`` solved for ``x``.

The predicate and every case are computed from the same unknown ``x``, so no
single relation can be solved. Instead each case ``z = f_k(x)`` is inverted on
its own (a small schedule of its own), a discrete θ per element says which case
produced ``z``, and the predicate is re-evaluated on the recovered ``x``: where
it disagrees with θ, ``(z, θ)`` is outside the domain. A case that cannot be
inverted (a constant, as in ``relu``) is never chosen.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ._ir import V, Eqn, Program
from .errors import InversionError
from .theta import ThetaSpec, int_dtype

__all__ = ["PiecewiseBlock", "piecewise_cone"]


def _elementwise(e, shape):
    return all(o.shape == shape for o in e.outs) and all(v.shape in (shape, ()) for v in e.ins)


def piecewise_cone(anchor, definer, is_known, pending):
    """``(eqns, leaf)`` when every unknown input of the ``select_n`` anchor traces back to one
    variable through elementwise relations; else ``None``."""
    if anchor.prim is not lax.select_n_p or is_known(anchor.ins[0]):
        return None
    shape = anchor.outs[0].shape
    cone, leaves = [], set()
    frontier = [v for v in anchor.ins if not is_known(v)]
    while frontier:
        u = frontier.pop()
        d = definer.get(u)
        if d is not None and d in pending and d not in cone and len(d.outs) == 1 and _elementwise(d, shape):
            cone.append(d)
            frontier.extend(v for v in d.ins if not is_known(v))
        elif d is None or d not in cone:
            leaves.add(u)
    if len(leaves) != 1:
        return None
    (leaf,) = leaves
    if leaf.shape != shape or not leaf.is_float:
        return None
    return cone, leaf


def _sub_program(eqns, leaf, out, known, assume=None):
    """The relations computing ``out`` from ``leaf``, as a program on *scalars*.

    The cone is elementwise, so one element's worth of it is solved and the
    schedule is vmapped over elements; that keeps a log|det| and a domain flag
    per element, which the choice of piece needs. Returns the program and the
    outer values feeding its extra inputs (known variables and array constants).
    ``assume`` fixes variables to constants: inside piece ``k`` the predicate is
    ``k``, which also resolves the inner ``where`` of the double-where idiom
    (``jnp.where(x > 0, x, expm1(jnp.where(x > 0, 0, x)))``).
    """
    assume = assume or {}
    needed, keep = {out}, []
    for e in sorted(eqns, key=lambda e: e.id, reverse=True):
        if any(o in needed for o in e.outs) and not any(o in assume for o in e.outs):
            keep.append(e)
            needed.update(v for v in e.ins if not v.is_const)
    keep.reverse()
    scalar = {}
    feeds = []  # outer variables (known or array constants) passed in per element

    def s(v):
        if v in scalar:
            return scalar[v]
        if v in assume:
            new = V((), v.dtype, value=np.asarray(assume[v], v.dtype))
        elif v.is_const and np.size(v.value) == 1:
            new = V((), v.dtype, value=np.asarray(v.value).reshape(()))
        else:
            new = V((), v.dtype)
            if v is not leaf and (v.is_const or v in known):
                feeds.append(v)
        scalar[v] = new
        return new

    s(leaf)
    new_eqns = [Eqn(e.prim, e.params, [s(v) for v in e.ins], [s(o) for o in e.outs], e.source) for e in keep]
    inputs = [scalar[leaf]] + [scalar[v] for v in feeds]
    return Program(inputs, [scalar[out]], new_eqns), feeds


class PiecewiseBlock:
    def __init__(self, anchor, eqns, leaf, known, table, origin):
        from ._schedule import build_schedule

        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self.leaf = leaf
        self.known_inputs = list(known)
        pred, cases = anchor.ins[0], anchor.ins[1:]
        self.pred_prog = _sub_program(self.eqns, leaf, pred, known) if not pred.is_const else None
        self.cases = []
        for c in cases:
            if c is leaf:
                self.cases.append("identity")
                continue
            if c.is_const or c in known:
                self.cases.append(None)  # a constant piece: not invertible
                continue
            k = len(self.cases)
            prog, feeds = _sub_program(self.eqns, leaf, c, known, assume={pred: k} if not pred.is_const else None)
            try:
                sub = build_schedule(prog, prog.invars[1:], prog.invars[:1], prog.outvars, {}, table, {})
            except InversionError:
                self.cases.append(None)
                continue
            if sub.theta:
                self.cases.append(None)  # a piece needing its own θ: not supported here
                continue
            self.cases.append((feeds, sub))
        if all(c is None for c in self.cases):
            raise InversionError(f"no piece of the piecewise function at {anchor.source} can be inverted")
        n = len(cases)
        self.theta = (ThetaSpec(leaf.shape, np.dtype(int_dtype()), constraints.integer_interval(0, n - 1), "piece", origin),)
        self.description = f"piecewise: invert each of {n} pieces, θ picks the piece, predicate re-checked"

    def _predicate(self, known_env, x):
        if self.pred_prog is None:
            return jnp.asarray(self.anchor.ins[0].value)
        prog, feeds = self.pred_prog
        return _per_element(lambda xi, *f: prog.evaluate(xi, *f)[0], x, _feed_values(feeds, known_env))

    def solve(self, known_env, z, theta):
        from ._schedule import run_schedule

        (choice,) = theta
        x = jnp.zeros_like(z)
        ld = jnp.zeros_like(z)
        valid = jnp.zeros(z.shape, bool)
        for k, case in enumerate(self.cases):
            if case is None:
                continue
            if case == "identity":
                xk, ldk, okk = z, jnp.zeros_like(z), True
            else:
                feeds, sub = case

                def run(zi, *f, sub=sub):
                    xs, ld_i, ok_i = run_schedule(sub, list(f), [zi], {})
                    return xs[0], ld_i, ok_i

                xk, ldk, okk = _per_element(run, z, _feed_values(feeds, known_env))
            pick = choice == k
            x = jnp.where(pick, xk, x)
            ld = jnp.where(pick, ldk, ld)
            valid = valid | (pick & okk)
        pred = self._predicate(known_env, x).astype(choice.dtype)
        ok = jnp.all(valid & (pred == choice))
        return x, jnp.sum(jnp.where(valid, ld, 0.0)), ok

    def pgf(self, known_env, x):
        return (self._predicate(known_env, x).astype(int_dtype()),)


def _feed_values(feeds, known_env):
    return [v.value if v.is_const else known_env[v] for v in feeds]


def _per_element(fn, x, feeds):
    """Apply a scalar function to every element of ``x`` (with matching elements of ``feeds``)."""
    import jax

    if jnp.ndim(x) == 0:
        return fn(x, *feeds)
    flat = [jnp.reshape(f, -1) if jnp.ndim(f) else f for f in feeds]
    axes = [0 if jnp.ndim(f) else None for f in feeds]
    out = jax.vmap(fn, in_axes=[0] + axes)(jnp.reshape(x, -1), *flat)
    return jax.tree_util.tree_map(lambda o: jnp.reshape(o, jnp.shape(x)), out)
