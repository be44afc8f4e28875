"""The planar-chain strategy: an x and a y coordinate whose terms pair up, over angles whose last
two joints move two links by a unimodular integer map, make a chain block (:class:`PlanarChains`)."""

from __future__ import annotations

import numpy as np
from jax import lax

from ..base import Strategy, block_solve
from .angles import Angles
from .block import ChainBlock
from .terms import _coordinates, _NoChain, _trig_terms


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
