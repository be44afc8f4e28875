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
    return state.free_queue.best(_MAX_CANDIDATES)


class FreeQueue:
    """The variables that may be freed, in a heap by their freeing order (:func:`_free_key`).

    A variable is a candidate while it is unknown and appears in a pending relation. Its
    key changes only when one of its relations is settled (fewer pending uses, perhaps a
    cheaper worst use), so the search tells the queue what changed (:meth:`known`,
    :meth:`finished`) and only those variables are re-ranked: choosing a variable costs
    O(log N), not a scan of the program (a sum over N sites freed N − 1 times was O(N²)).
    Entries whose key has changed stay in the heap and are skipped when met.
    """

    def __init__(self, state):
        self.state = state
        self.rebuild()

    def rebuild(self):
        """Everything from the search's state (at the start, and after backtracking)."""
        st = self.state
        self.touching = {}  # variable -> pending relations it appears in
        self.use_costs = {}  # variable -> {solve cost: pending uses of that cost}
        self.entries = {}  # variable -> its live heap entry
        self.heap = []
        self._seq = 0
        for e in st.pending:
            self._count(e, +1)
        for v in self.touching:
            self._rank(v, push=False)
        self.heap = list(self.entries.values())
        heapq.heapify(self.heap)

    def known(self, v):
        self.entries.pop(v, None)

    def finished(self, e):
        """``e`` left the pending relations: re-rank its variables."""
        self._count(e, -1)
        self.rerank(_places(e))

    def rerank(self, variables):
        """Rank ``variables`` again (their pending uses changed)."""
        for v in variables:
            self._rank(v)

    def best(self, limit):
        """Up to ``limit`` candidates that may be freed now (discrete ones only when a stalled
        relation waits on them, continuous ones within the θ budget), best first."""
        st = self.state
        chosen, kept, waiting = [], [], None
        while self.heap and len(chosen) < limit:
            entry = heapq.heappop(self.heap)
            v = entry[2]
            if self.entries.get(v) is not entry:
                continue  # re-ranked or known since
            kept.append(entry)
            if is_discrete(v):
                if waiting is None:
                    waiting = {u for e in st.stalled() for u in e.ins if not st.is_known(u)}
                if v not in waiting:
                    continue
            elif v.size > st.budget:
                continue
            chosen.append(v)
        for entry in kept:
            heapq.heappush(self.heap, entry)
        return chosen

    def _count(self, e, step):
        for v in _places(e):
            self.touching[v] = self.touching.get(v, 0) + step
        cost = solve_cost(self.state, e.prim)
        for v in set(e.ins):
            if not v.is_const:
                costs = self.use_costs.setdefault(v, {})
                costs[cost] = costs.get(cost, 0) + step

    def _rank(self, v, push=True):
        st = self.state
        if v in st.known or not self.touching.get(v):
            self.entries.pop(v, None)
            return
        worst = max((c for c, n in self.use_costs.get(v, {}).items() if n > 0), default=0)
        key = _free_key(st, v, worst)
        old = self.entries.get(v)
        if old is not None and old[0] == key:
            return
        self._seq += 1
        entry = self.entries[v] = (key, self._seq, v)
        if push:
            heapq.heappush(self.heap, entry)


def _places(e):
    """The non-constant variables ``e`` reads or writes, once each."""
    return {v for v in e.ins + e.outs if not v.is_const}


def _free_key(state, v, cost):
    """``cost``: the highest :func:`solve_cost` of ``v``'s pending uses."""
    cls, is_input = _free_class(state, v)
    uses = state.pending_uses.get(v, 0)
    constrained = 0 if cls == 1 else 1
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
