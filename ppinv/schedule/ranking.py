"""Which variable to draw from θ when nothing else moves, best first (DESIGN §3).

A discrete variable a relation is waiting on comes first; then the variable
with the most pending uses (fan-out is resolved by freeing the shared value);
then an input with a constrained support (θ then carries it); inputs before
intermediates; then the one whose use would be the most awkward to solve
through (a restricted domain such as ``sin``, then products — so the rest is
solved by subtraction rather than by division or arcsine).
"""

from __future__ import annotations

import heapq

import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ..theta import integer, is_constrained

_MAX_CANDIDATES = 4  # alternatives per decision

def is_discrete(v) -> bool:
    return not v.is_float


def free_candidates(state):
    """Variables that may be freed now, best first (at most a handful)."""
    waiting = {v for e in state.stalled() for v in e.ins if not state.is_known(v)}
    keyed = []
    for v in _candidates(state):
        if is_discrete(v):
            if v not in waiting:
                continue
        elif v.size > state.budget:
            continue
        keyed.append((_free_key(state, v), v))
    return [v for _, v in heapq.nsmallest(_MAX_CANDIDATES, keyed, key=lambda kv: kv[0])]


def _candidates(state):
    seen = set()
    for e in state.pending:
        for v in list(e.ins) + list(e.outs):
            if not v.is_const and v not in state.known and v not in seen:
                seen.add(v)
                yield v


def _free_key(state, v):
    cls, is_input = _free_class(state, v)
    uses = state.pending_uses.get(v, 0)
    constrained = 0 if cls == 1 else 1
    cost = max((solve_cost(state, e.prim) for e in state.users.get(v, ()) if e in state.pending), default=0)
    # Inputs before intermediates: an input left to be solved behind an intermediate freed
    # for its cost is often a constrained one, whose support check is then a hard wall in
    # θ-space that samplers hit; freed, θ carries the support.
    return (min(cls, 1), -uses, 0 if is_input else 1, -cost, constrained, v.size, v.id)


def _free_class(state, v):
    """``(class, is an input)`` of ``v``: 0 discrete, 1 an input with a constrained support, 2
    otherwise (fixed for the search, so kept: the ranking runs at every decision)."""
    found = state.free_classes.get(v)
    if found is None:
        if is_discrete(v):
            cls = 0
        elif v in state.input_set and is_constrained(state.supports.get(v)):
            cls = 1
        else:
            cls = 2
        found = state.free_classes[v] = (cls, v in state.input_set)
    return found


def solve_cost(state, prim):
    """How awkward solving through ``prim`` is: its ``solve_cost`` slot (1 for products and
    powers, 0 by default), and 2 where a rule has a restricted domain or a discrete choice.
    Freeing the variable behind the most awkward use keeps the remaining solves total."""
    cost = state.solve_costs.get(prim)
    if cost is None:
        cost = state.table.slot("solve_cost", prim) or 0
        for r in state.table.rules_for(prim):  # function rules: cost 0
            if getattr(r, "domain", None) is not None or getattr(r, "choices", ()):
                cost = max(cost, 2)
        state.solve_costs[prim] = cost
    return cost


def discrete_support(state, v):
    """The support of a discrete variable drawn from θ: a boolean, a branch or case index."""
    if v.dtype == np.bool_:
        return constraints.integer_interval(0, 1)
    d = state.definer.get(v)
    if d is not None and d.prim is lax.convert_element_type_p and d.ins[0].dtype == np.bool_:
        return constraints.integer_interval(0, 1)
    for e in state.users.get(v, ()):
        n = e.params.get("branches")
        if n is not None and e.ins[0] is v:
            return constraints.integer_interval(0, len(n) - 1)
        if e.prim is lax.select_n_p and e.ins[0] is v:  # the index of one of its cases
            return constraints.integer_interval(0, len(e.ins) - 2)
    return integer
