"""Connected linear relations solved jointly (DESIGN §3, coupled blocks; ``_block/``).

A block grows from a stalled linear relation through the linear relations that
define its unknowns (each used only inside the block) and takes in the other
stalled linear relations that share a variable with it. Which relations are
linear comes from the table's ``linearity`` slot, so a primitive a user declares
linear (:func:`ppinv.rules.deflinear`) joins blocks like JAX's own.
"""

from __future__ import annotations

from .._block import LinearBlock, PieceRankError, is_linear
from .base import Strategy, block_solve
from .cones import known_operands


class LinearBlocks(Strategy):
    name = "linear"

    def candidates(self, state):
        for anchor in state.stalled():
            found = grow_linear_block(state, anchor)
            if found is None:
                continue
            anchors, interior, leaves, known = found
            rows = sum(o.size for e in anchors for o in e.outs)
            cols = sum(v.size for v in leaves)
            if rows > cols or cols - rows > state.budget:
                continue
            if rows < cols:
                block_eqns = set(anchors) | set(interior)
                outside = any(
                    e not in block_eqns for v in leaves for e in state.users.get(v, ()) if e in state.pending
                )
                # with several leaves, freeing one of them (the search's next move) gives a
                # clearer θ than a rotation mixing them; a single leaf has no such alternative
                if outside or len(leaves) != 1:
                    continue
            try:
                block = LinearBlock(anchors, interior, leaves, known, None, anchors[0].describe(), state.structure)
            except PieceRankError:  # singular on a piece of a select: the select rule or a piecewise solve
                continue
            yield block_solve(block, hints=("block_null_space",) * len(block.theta), finished=anchors,
                              determined=leaves)


def grow_linear_block(state, anchor):
    """Grow a linear block from ``anchor``: (anchors, interior relations, leaves, known inputs),
    or ``None`` where there is none, or none :class:`LinearBlocks` would take (see below)."""

    def linear(e):
        known = [state.is_known(v) for v in e.ins]
        return e in state.pending and is_linear(e, known, state.structure.moves_with_theta, state.table)

    def only_used_inside(u, members):
        return all(e in members for e in state.users.get(u, ()) if e in state.pending)

    def joins(d, members):
        return d is not None and d not in members and len(d.outs) == 1 and linear(d)

    if not (linear(anchor) and all(state.is_known(o) for o in anchor.outs)):
        return None
    # Leaves no relation can absorb (inputs, outputs of non-linear relations) stay leaves. Two
    # of them with more entries than all stalled relations together could observe make a block
    # LinearBlocks refuses (rows < cols, several leaves): stop there (a sum of N sites: O(1), not O(N)).
    max_rows = sum(o.size for e in state.stalled() for o in e.outs)
    lasting, lasting_size = 0, 0
    anchors, interior, leaves = [anchor], [], []
    members, leaf_set, interior_outs = {anchor}, set(), set()  # sets beside the lists: O(1) membership
    frontier = [v for v in anchor.ins if not state.is_known(v)]
    grew = True
    while grew:
        grew = False
        while frontier:
            u = frontier.pop()
            if u in leaf_set or u in interior_outs:
                continue
            d = state.definer.get(u)
            if joins(d, members) and only_used_inside(u, members):
                interior.append(d)
                interior_outs.update(d.outs)
                members.add(d)
                frontier.extend(v for v in d.ins if not state.is_known(v))
            else:
                leaves.append(u)
                leaf_set.add(u)
                if d is None or len(d.outs) != 1 or not linear(d):
                    lasting, lasting_size = lasting + 1, lasting_size + u.size
                    if lasting > 1 and lasting_size > max_rows:
                        return None
        # a leaf whose every use has joined the block since is computed inside it after all
        for u in list(leaves):
            if joins(state.definer.get(u), members) and only_used_inside(u, members):
                leaves.remove(u)
                leaf_set.discard(u)
                frontier.append(u)
                grew = True
        # other stalled linear relations that share a variable with the block join it
        inside = leaf_set | interior_outs
        for e in state.stalled():
            if e in members or not linear(e) or not all(state.is_known(o) for o in e.outs):
                continue
            if any(v in inside for v in e.ins):
                anchors.append(e)
                members.add(e)
                frontier.extend(v for v in e.ins if not state.is_known(v))
                grew = True
    if not leaves:
        return None
    return anchors, interior, leaves, known_operands(state, sorted(members, key=state.order.__getitem__))
