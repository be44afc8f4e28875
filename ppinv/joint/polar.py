"""``r·cos t`` and ``r·sin t`` both observed: radius and angle (``_polar.py``)."""

from __future__ import annotations

from jax import lax

from .._polar import PolarBlock
from .base import Strategy, block_solve
from .cones import nonnegative


class PolarPairs(Strategy):
    name = "polar"

    def candidates(self, state):
        parts = {}
        for e in state.stalled():
            found = polar_part(state, e)
            if found is not None:
                parts.setdefault((found[0], found[1]), {})[found[2]] = e
        for (r, t), pair in parts.items():
            if set(pair) != {"cos", "sin"}:
                continue
            block = PolarBlock(pair["cos"], pair["sin"], r, t, nonnegative(state.supports.get(r)),
                               pair["cos"].describe())
            yield block_solve(block, hints=("polar_period", "polar_sign"))


def polar_part(state, e):
    """``(r, t, "cos" | "sin")`` when ``e`` is an observed ``r · cos(t)`` / ``r · sin(t)``."""
    if e.prim is not lax.mul_p or not state.is_known(e.outs[0]) or not e.outs[0].is_float:
        return None
    shape = e.outs[0].shape
    for i in (0, 1):
        trig, r = e.ins[i], e.ins[1 - i]
        d = state.definer.get(trig)
        if d is None or d.prim not in (lax.cos_p, lax.sin_p) or d not in state.pending:
            continue
        t = d.ins[0]
        if r.is_const or state.is_known(r) or state.is_known(t) or r is t or r is trig:
            continue
        if not (r.shape == t.shape == trig.shape == shape and r.is_float):
            continue
        return r, t, "cos" if d.prim is lax.cos_p else "sin"
    return None


