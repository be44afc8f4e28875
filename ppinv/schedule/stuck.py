"""The error when a program cannot be reoriented: which relations are coupled, and why."""

from __future__ import annotations

from ..errors import NoRuleError, UnderdeterminedError
from ..joint.cones import univariate_leaf


def raise_stuck(state):
    stalled = state.stalled()
    lines = []
    missing = []
    for e in stalled:
        unknown = [v for v in e.ins if not state.is_known(v)]
        lines.append(f"    {e.describe()}\n      unknown: {', '.join(map(repr, unknown))}")
        # relations with discrete outputs (comparisons) are checks, never solved backwards
        # (primitives with a linearity slot and no rule of their own are solved in linear blocks)
        linear = state.table.slot("linearity", e.prim) is not None
        if not state.rules(e) and all(o.is_float for o in e.outs) and not linear:
            missing.append(e)
    if missing:
        e = missing[0]
        raise NoRuleError(
            f"no inverse rule for primitive '{e.prim.name}' (at {e.source}); it lies between the "
            f"unknown inputs and the observations:\n    {e.describe()}\n"
            "Register one with ppinv.register_rule(<primitive>, rule), declare the inverse of the "
            "enclosing function with @ppinv.custom_inverse, or restructure the program."
        )
    if not stalled:
        pend = sorted(state.pending, key=state.order.__getitem__)
        lines = [f"    {e.describe()}" for e in pend[:8]]
    hint = ""
    for e in stalled:
        leaf = univariate_leaf(state, e)
        if leaf is not None:
            hint = (
                f"\nThe first relation depends on the one unknown {leaf!r} only, but "
                "through a function ppinv cannot show to be strictly monotone over that variable's support "
                "(interval bounds on its derivative change sign), so it may have several preimages, which "
                "one numeric solve would miss. If it is monotone on a smaller set, give that set as the "
                "support (the prior's support in a model, support= in ppinv.inverse)."
            )
            break
    raise UnderdeterminedError(
        "cannot reorient the program: these relations are coupled and no single rule solves any of "
        f"them, and the remaining freedom ({state.budget} θ dimensions) does not allow freeing another "
        "variable without over-determining them:\n" + "\n".join(lines[:12]) + "\n"
        "A joint solve is needed (for example two observed linear combinations of the same "
        "variables, or a polynomial in one variable). Rewrite the program so each observation "
        "isolates a variable, or declare the inverse of this block with @ppinv.custom_inverse." + hint
        + declines_note(state)
    )


_MAX_DECLINES_SHOWN = 3


def declines_note(state, leave_out=None) -> str:
    """What the strategies that declined a candidate said (empty if none did, ``leave_out``
    not repeated): why a joint solve was not built is often the most specific thing known
    about a refused program."""
    seen = {}
    left_out = None if leave_out is None else str(leave_out)
    for name, err in state.strategy_declines:
        if str(err) != left_out:
            seen.setdefault((name, str(err)), None)
    if not seen:
        return ""
    shown = list(seen)[:_MAX_DECLINES_SHOWN]
    more = len(seen) - len(shown)
    lines = [f"  strategy {name!r}: " + msg.replace("\n", "\n    ") for name, msg in shown]
    return ("\nJoint solves declined on the way:\n" + "\n".join(lines)
            + (f"\n  ({more} more)" if more else ""))
