"""Reduce a failing program to a small one (:func:`shrink`)."""

from __future__ import annotations

from dataclasses import replace

from .program import RandomProgram
from .vocabulary import REFS


def _without_op(prog, k):
    """``prog`` with op ``k`` removed; its uses read the op's first operand instead."""
    op = prog.ops[k]
    removed = prog.n_inputs + k
    stand_in = op[REFS[op[0]][0]]

    def remap(i):
        if i == removed:
            return stand_in
        return i - 1 if i > removed else i

    ops = []
    for o in prog.ops[:k] + prog.ops[k + 1 :]:
        o = list(o)
        for pos in REFS[o[0]]:
            o[pos] = remap(o[pos])
        ops.append(tuple(o))
    outputs = sorted({remap(i) for i in prog.outputs})
    if any(i < prog.n_inputs for i in outputs):
        return None
    return replace(prog, ops=ops, outputs=outputs)


def _without_input(prog, j):
    used = {o[pos] for o in prog.ops for pos in REFS[o[0]]}
    if j in used or prog.n_inputs == 1:
        return None
    shift = lambda i: i - 1 if i > j else i  # noqa: E731
    ops = []
    for o in prog.ops:
        o = list(o)
        for pos in REFS[o[0]]:
            o[pos] = shift(o[pos])
        ops.append(tuple(o))
    sups = prog.supports[:j] + prog.supports[j + 1 :]
    return replace(prog, ops=ops, n_inputs=prog.n_inputs - 1, outputs=[shift(i) for i in prog.outputs], supports=sups)


def _candidates(prog):
    for k in range(len(prog.ops)):
        yield _without_op(prog, k)
    if len(prog.outputs) > 1:
        for i in prog.outputs:
            yield replace(prog, outputs=[o for o in prog.outputs if o != i])
    for j in range(prog.n_inputs):
        yield _without_input(prog, j)
    for j, s in enumerate(prog.supports):
        if s != ("real",):
            yield replace(prog, supports=prog.supports[:j] + (("real",),) + prog.supports[j + 1 :])


def shrink(prog: RandomProgram, still_fails, max_tries: int = 200) -> RandomProgram:
    """A smaller program for which ``still_fails(program)`` holds (greedy: drop ops, outputs,
    unused inputs, supports, while it keeps failing)."""
    tries = 0
    improved = True
    while improved and tries < max_tries:
        improved = False
        for cand in _candidates(prog):
            if cand is None:
                continue
            tries += 1
            try:
                fails = still_fails(cand)
            except Exception:  # noqa: BLE001 - a candidate that breaks differently is not a reduction
                fails = False
            if fails:
                prog, improved = cand, True
                break
            if tries >= max_tries:
                break
    return prog
