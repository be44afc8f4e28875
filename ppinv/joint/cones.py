"""Cones: the relations between one stalled relation and the unknowns it traces back to."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
from jax import lax

from .._compat import is_concrete
from .._monotone import is_elementwise_analytic


def expand_cone(state, anchor, accept, max_leaves=None):
    """``(cone, leaves)``: from ``anchor`` down through the pending relations ``accept`` takes
    (one output each), the unknowns where the walk stops as leaves; ``None`` if ``accept`` says
    so (it returns ``None`` to abort) or once there are more than ``max_leaves`` leaves. The
    cone is in program order, ``anchor`` included."""
    cone, in_cone, leaves = [anchor], {anchor}, set()  # the set: membership in O(1), not O(cone)
    frontier = [v for v in anchor.ins if not state.is_known(v)]
    while frontier:
        u = frontier.pop()
        d = state.definer.get(u)
        verdict = accept(u, d) if d is not None and d in state.pending and d not in in_cone and len(d.outs) == 1 else False
        if verdict is None:
            return None
        if verdict:
            cone.append(d)
            in_cone.add(d)
            frontier.extend(v for v in d.ins if not state.is_known(v))
        elif d is None or d not in in_cone:
            leaves.add(u)
            if max_leaves is not None and len(leaves) > max_leaves:
                return None
    cone.sort(key=state.order.__getitem__)
    return cone, leaves


def single_leaf_cones(state, anchor, expandable):
    """Cones between ``anchor`` and one variable, smallest first.

    Unknown operands are expanded latest-defined first (through relations
    ``expandable`` accepts); each time one variable remains, ``(cone, leaf)`` is
    yielded. Stopping at the nearest such variable (``x`` in ``b·x·(1 − x)``)
    rather than at the program's inputs keeps an iterated map a chain of small
    solves instead of one polynomial of degree 2ⁿ.
    """
    cone, in_cone = [anchor], {anchor}

    def stuck(v):  # the walk cannot expand v, now or later (the cone only grows)
        d = state.definer.get(v)
        return d is None or d not in state.pending or d in in_cone or len(d.outs) != 1 or not expandable(d)

    def latest_first(v):  # heap key: the latest-defined variable first (ties end the walk: both are stuck)
        return -state.order.get(state.definer.get(v), -1), next(tie)

    tie = itertools.count()
    frontier = {v for v in anchor.ins if not state.is_known(v)}
    latest = [(latest_first(v), v) for v in frontier]  # the frontier as a heap: O(log n) per step, not O(n)
    heapq.heapify(latest)
    stuck_in_frontier = {v for v in frontier if stuck(v)}
    while frontier:
        if len(frontier) == 1:
            yield list(cone), next(iter(frontier))
        if len(stuck_in_frontier) > 1:
            return  # two variables that never leave the frontier: no single leaf below (a sum of N sites: O(1), not O(N²))
        _, u = heapq.heappop(latest)
        if u in stuck_in_frontier or stuck(u):
            return
        d = state.definer[u]
        cone.append(d)
        in_cone.add(d)
        frontier.discard(u)
        for v in d.ins:
            if not state.is_known(v) and v not in frontier:
                frontier.add(v)
                heapq.heappush(latest, (latest_first(v), v))
                if stuck(v):
                    stuck_in_frontier.add(v)


def elementwise_cones(state, anchor):
    """Single-leaf cones of elementwise analytic relations below ``anchor`` (see
    :func:`single_leaf_cones`), the leaf of the anchor's shape; nothing if the anchor is not one."""
    if len(anchor.outs) != 1 or not anchor.outs[0].is_float or not is_elementwise_analytic(anchor, state.table):
        return
    shape = anchor.outs[0].shape

    def elementwise(e):
        return is_elementwise_analytic(e, state.table) and e.outs[0].shape == shape and all(
            v.shape in (shape, ()) for v in e.ins
        )

    if not elementwise(anchor):
        return
    for cone, leaf in single_leaf_cones(state, anchor, elementwise):
        if leaf.shape != shape or not leaf.is_float:
            return
        yield cone, leaf


def univariate_leaf(state, anchor):
    """The single variable an elementwise-analytic relation traces back to, if any."""
    return next((leaf for _, leaf in elementwise_cones(state, anchor)), None)


def known_operands(state, eqns):
    """The known, non-constant inputs of ``eqns``, in order of first use."""
    known = []
    for e in eqns:
        for v in e.ins:
            if state.is_known(v) and not v.is_const and v not in known:
                known.append(v)
    return known


def connected_groups(found):
    """Anchors (keys of ``found``: anchor -> (cone, leaves)) grouped by shared leaves."""
    groups = []
    for anchor, (_, leaves) in found.items():
        joined = [g for g in groups if any(leaves & found[a][1] for a in g)]
        merged = [anchor] + [a for g in joined for a in g]
        groups = [g for g in groups if g not in joined] + [merged]
    return groups


def nonnegative(sup) -> bool:
    """The support has a concrete scalar lower bound ≥ 0 (``positive``, ``nonnegative``, an interval)."""
    lower = getattr(sup, "lower_bound", None)
    return lower is not None and np.ndim(lower) == 0 and is_concrete(lower) and float(lower) >= 0


# --- heads: all entries but some of a vector observed -----------------------------------------
def pending_definer(state, v, prim):
    """The pending relation of primitive ``prim`` that defines ``v``, or ``None``."""
    d = state.definer.get(v)
    return d if d is not None and d.prim is prim and d in state.pending else None


def through_broadcast(state, v):
    """``v`` without broadcasts of one value (``f64[] → f64[1]``), which subtract or divide it from every entry."""
    while True:
        d = pending_definer(state, v, lax.broadcast_in_dim_p) or pending_definer(state, v, lax.stop_gradient_p)
        if d is None or d.ins[0].size != 1:
            return v
        v = d.ins[0]


def observed_range(state, anchor):
    """``(c, start, stop)``: the anchor observes ``c[start:stop]`` of a 1-D unknown ``c``, not all of it."""
    if anchor.prim is not lax.slice_p or not state.is_known(anchor.outs[0]):
        return None
    c = anchor.ins[0]
    if state.is_known(c) or len(c.shape) != 1 or c.shape[0] < 2 or not c.is_float:
        return None
    if anchor.params.get("strides") not in (None, (1,)):
        return None
    start, stop = int(anchor.params["start_indices"][0]), int(anchor.params["limit_indices"][0])
    return (c, start, stop) if stop - start < c.shape[0] else None
