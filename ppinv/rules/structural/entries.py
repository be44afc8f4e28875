"""A stuck set of relations solved entry by entry (:func:`entry_split_block`): the schedule of their
entry program, as one step of the enclosing schedule."""

from __future__ import annotations

from ...theta import _base
from .common import _Decline
from .entry_program import MAX_SPLIT_ENTRIES, _EntryProgram


_SPLITTING = []  # set while a split's own program is scheduled: it is not split again


class EntrySplitBlock:
    """Relations solved entry by entry: the schedule of their entry program, as one step.

    Its interface is a linear block's (``_block.LinearBlock``): ``anchors`` (the relations
    whose outputs are known: the block solves them), ``known_inputs``, ``leaves`` (the unknowns
    no relation defines: the block determines them, the other relations are then evaluated
    forward), ``theta``, ``solve(known_env, observed, theta)`` and ``pgf(known_env, leaf_values)``.
    """

    def __init__(self, eqns, is_known, supports, table, names):
        from ..._ir import Program
        from ...schedule import build_schedule

        self.anchors = [e for e in eqns if any(is_known(o) for o in e.outs)]
        if not self.anchors or any(not all(is_known(o) for o in e.outs) for e in self.anchors):
            raise _Decline
        defined = {o for e in eqns for o in e.outs}
        read = []
        for e in eqns:
            read += [v for v in e.ins if not v.is_const and v not in read]
        self.known_inputs = [v for v in read if is_known(v) and v not in defined]
        roots = [v for v in read if not is_known(v) and v not in defined]
        inner = [o for e in eqns for o in e.outs if not is_known(o)]
        observed = [o for e in self.anchors for o in e.outs]
        if sum(v.size for v in roots + inner + observed) > MAX_SPLIT_ENTRIES:
            raise _Decline
        if all(v.size <= 1 for e in eqns for v in list(e.ins) + list(e.outs)):
            raise _Decline  # entries already
        prog = _EntryProgram(self.known_inputs + roots)
        for e in eqns:
            prog.add(e)
        for v in observed:
            prog.whole_of(v)
        self.program = Program(self.known_inputs + roots, observed, prog.eqns)
        sub_supports, sub_names = {}, {}
        for v in roots:
            sup, name = supports.get(v), names.get(v)
            if sup is not None:
                sub_supports[v] = sup
            for k, x in enumerate(prog.entries.get(v, ())):
                if sup is not None and not x.is_const:
                    sub_supports[x] = _base(sup)  # one entry's support
                if name is not None:
                    sub_names[x] = f"{name}_{k}"
        self.leaves = roots  # what the relations compute from them is evaluated forward afterwards
        _SPLITTING.append(True)
        try:
            self.schedule = build_schedule(self.program, self.known_inputs, roots, observed, sub_supports, table,
                                           sub_names)
        finally:
            _SPLITTING.pop()
        self.theta_hints = list(self.schedule.theta)
        self.theta = tuple(self.schedule.theta.values())
        self.description = (f"entry by entry: {len(eqns)} relation(s) as {len(prog.eqns)} relations of their "
                            f"entries, solved in order")

    def solve(self, known_env, observed, theta):
        from ...schedule import run_schedule_extra

        xs, log_det, ok, _ = run_schedule_extra(
            self.schedule, [known_env[v] for v in self.known_inputs], observed, dict(zip(self.theta_hints, theta)))
        return list(xs), log_det, ok

    def pgf(self, known_env, leaf_values):
        from ...schedule import theta_from_env

        env = dict(known_env)
        env.update(zip(self.leaves, leaf_values))
        _, full = self.program.evaluate(*[env[v] for v in self.program.invars], record=True)
        theta = theta_from_env(self.schedule, full)
        return tuple(theta[n] for n in self.theta_hints)


def entry_split_block(eqns, is_known, supports, table, names):
    """An :class:`EntrySplitBlock` of ``eqns`` (in program order), or ``None`` where the split
    would not help (too large, entries already, or its schedule fails too). Indices that are not
    constants in a copy or scatter among them are refused (``InversionError``) with the reason."""
    if _SPLITTING:
        return None
    from ...errors import InversionError

    try:
        return EntrySplitBlock(eqns, is_known, supports, table, names)
    except _Decline:
        return None
    except InversionError as err:
        if "cannot solve these relations entry by entry" in str(err):
            raise
        return None
