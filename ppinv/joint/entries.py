"""Every pending relation at once, entry by entry: a triangular system over array entries
(``rules/structural/entries.py``). Asked only when nothing can be freed either."""

from __future__ import annotations

from ..rules.structural import entry_split_block
from .base import Strategy, block_solve


class EntryByEntry(Strategy):
    name = "entries"
    stage = "last_resort"

    def candidates(self, state):
        pending = sorted(state.pending, key=state.order.__getitem__)
        block = entry_split_block(pending, state.is_known, state.supports, state.table, state.names)
        if block is None:
            return
        yield block_solve(block)  # its anchors; the other relations are evaluated forward from the leaves
