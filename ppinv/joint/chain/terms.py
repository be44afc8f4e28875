"""Parsing a planar chain: observed coordinates as sums of ``r·cos(α)`` / ``r·sin(α)`` terms plus
known offsets, written as separate outputs or stacked (:func:`_trig_terms`, :func:`_coordinates`)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from ...schedule.steps import read

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
