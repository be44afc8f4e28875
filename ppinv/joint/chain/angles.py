"""The angles of a chain's terms as integer combinations of unknown joint entries plus known offsets
(:class:`Angles`), and whether a joint's support holds one representative per turn (:func:`_period_free`)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ..._compat import is_concrete
from ...schedule.steps import read
from .terms import TWO_PI, _entries, _NoChain


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


def _period_free(sup, shape=(), index=None):
    """``(lo, hi)`` when the support of entry ``index`` (flat; ``None`` for a scalar) of a joint of
    ``shape`` is an interval of width ≤ 2π (one representative per turn). A support on whole
    vectors of entrywise intervals (``independent``, as ``to_event`` makes it) and bounds given per
    entry are read entry by entry."""
    while isinstance(sup, constraints.independent):
        sup = sup.base_constraint
    lo, hi = getattr(sup, "lower_bound", None), getattr(sup, "upper_bound", None)
    if lo is None or hi is None or not (is_concrete(lo) and is_concrete(hi)):
        return None
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if lo.ndim or hi.ndim:
        if index is None:
            return None
        try:
            lo, hi = (np.broadcast_to(b, shape).reshape(-1)[index] for b in (lo, hi))
        except ValueError:  # bounds that do not broadcast to the joint: nothing to read
            return None
    lo, hi = float(lo), float(hi)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and hi - lo <= TWO_PI + 1e-12 else None
