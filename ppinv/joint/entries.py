"""Every pending relation at once, entry by entry: a triangular system over array entries
(``rules/structural.py``). Asked only when nothing can be freed either."""

from __future__ import annotations

from ..rules.structural import entry_split_block
from ..schedule.steps import BlockStep
from .base import JointSolve, Strategy


class EntryByEntry(Strategy):
    name = "entries"
    stage = "last_resort"

    def candidates(self, state):
        pending = sorted(state.pending, key=state.order.__getitem__)
        block = entry_split_block(pending, state.is_known, state.supports, state.table, state.names)
        if block is None:
            return
        yield JointSolve(
            make_step=lambda names: BlockStep(block, tuple(names)),
            theta=tuple(block.theta),
            hints=tuple(block.theta_hints),
            finished=tuple(block.anchors),  # the other relations are evaluated forward from the leaves
            determined=tuple(block.leaves),
        )
