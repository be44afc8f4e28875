"""Why ``(y, θ)`` has no preimage: which relation of the schedule failed, and where.

At run time every domain check of a schedule is folded into one flag, which is
all a compiled inverse needs. When an eager call finds that flag False (or a
non-finite ``x``), :func:`diagnose` runs the schedule once more, eagerly, with
``run_schedule_extra``'s ``on_step`` hook, which hands over each step's own
flags and the values so far. The first step that fails is described: its
primitive, the user's source line, the values it was given, and whether they
follow from ``y`` alone (then ``y`` is outside the range of ``f``) or from θ.

A step that is itself a sub-schedule (a loop, a ``cond``, a custom inverse) is
named as a whole: its relation is the one at the user's call site. Nothing
here runs inside ``jit``.
"""

from __future__ import annotations

import numpy as np

from ._piecewise import UnionSchedule, theta_dependent
from .schedule import BlockStep, ForwardStep, FreeStep, PolyStep, SolveStep, run_schedule_extra

__all__ = ["diagnose"]

_MAX_ARGS = 6  # operands shown per relation; the rest elided


def diagnose(schedule, y_leaves, theta, fname="f", known=()):
    """A sentence naming the first failing step of ``schedule`` at ``(y, θ)``, or ``None``.

    ``known`` holds the values of the schedule's known inputs (an inverse's context).
    """
    if isinstance(schedule, UnionSchedule):
        return _diagnose_union(schedule, y_leaves, theta, fname, list(known))
    return _first_failure(schedule, y_leaves, theta, fname, list(known))[0]


def _first_failure(schedule, y_leaves, theta, fname, known):
    """``(message or None, xs)`` from one eager run of a plain schedule."""
    found = []
    from_theta = theta_dependent(schedule.steps, schedule.theta)

    def on_step(what, flags, env):
        if not found:
            why = _why(schedule, what, flags, env, theta, from_theta, fname)
            if why is not None:
                found.append(why)

    xs, _, _, _ = run_schedule_extra(schedule, known, y_leaves, theta, on_step=on_step)
    return (found[0] if found else None), xs


def _diagnose_union(union, y_leaves, theta, fname, known):
    """A union of schedules (one per side of a flat piece): the one θ picks, then its piece."""
    n = len(union.schedules)
    k = int(np.asarray(theta[union.PIECE]))
    if not 0 <= k < n:
        return f"θ[{union.PIECE!r}] = {k} picks no schedule: it takes the values 0..{n - 1}."
    local = {name: theta[u] for name, u in union.names[k].items()}
    why, xs = _first_failure(union.schedules[k], y_leaves, local, fname, known)
    if why is not None:
        return why
    if not bool(np.all(np.asarray(union._holds(k, union._read_after(known, xs))))):
        where = "; ".join(f"{'on' if on else 'off'} the flat piece {p.region} of {p.relation.name} at "
                          f"{p.relation.source}" for p, on in union.assignments[k])
        return (f"θ[{union.PIECE!r}] = {k} picks the schedule for the region {where}, but the values solved "
                "there lie outside it: this preimage belongs to another value of that θ.")
    for j, names in enumerate(union.own_discrete):
        for name in names if j != k else ():
            if bool(np.any(np.asarray(theta[name]) != 0)):
                return (f"θ[{name!r}] belongs to the schedule of θ[{union.PIECE!r}] = {j} and must be 0 when "
                        f"θ[{union.PIECE!r}] = {k}.")
    return None


# --- one step -------------------------------------------------------------------------------------
def _why(schedule, what, flags, env, theta, from_theta, fname):
    failed = any(not bool(np.all(np.asarray(f))) for f in flags)
    if isinstance(what, tuple):
        return _final_check(schedule, what, env, theta, from_theta, fname) if failed else None
    if failed and isinstance(what, ForwardStep):
        return _check_failure(schedule, what, env, theta)
    consumed, produced = _places(what)
    if not failed:  # no flag, but a NaN from finite values: a primitive evaluated outside its domain
        if not (_finite(env, consumed) and not _finite(env, produced)):
            return None
        if isinstance(what, FreeStep):
            return f"θ[{what.name!r}] = {_show(theta[what.name])} is not a finite value."
    relation, source = _relation(what, env)
    verdict = _verdict(what, consumed, produced, failed)
    return (f"{_primitive(what)} at {source}: {relation} {verdict}.\n"
            + _hint(what, consumed, schedule, from_theta, fname))


def _places(step):
    """``(consumed, produced)``: the variables a step reads and the ones it determines."""
    if isinstance(step, FreeStep):
        return (), (step.var,)
    if isinstance(step, ForwardStep):
        checked = step.check or (False,) * len(step.eqn.outs)
        return tuple(step.eqn.ins), tuple(o for o, k in zip(step.eqn.outs, checked) if not k)
    if isinstance(step, SolveStep):
        e = step.eqn
        places = list(zip(e.ins, step.known_in)) + list(zip(e.outs, step.known_out))
        return tuple(v for v, k in places if k), tuple(v for v, k in places if not k and not v.is_const)
    if isinstance(step, PolyStep):
        b = step.block
        return (b.anchor.outs[0], *b.known_inputs), (b.leaf,)
    b = step.block  # BlockStep
    return tuple(o for e in b.anchors for o in e.outs) + tuple(b.known_inputs), tuple(b.leaves)


def _anchors(step):
    if isinstance(step, (ForwardStep, SolveStep)):
        return [step.eqn]
    if isinstance(step, PolyStep):
        return [step.block.anchor]
    return list(step.block.anchors)


def _primitive(step):
    if isinstance(step, (PolyStep, BlockStep)):
        names = ", ".join(dict.fromkeys(e.name for e in _anchors(step)))
        return f"the joint solve of {names} [{step.block.description}]"
    return step.eqn.name


def _relation(step, env):
    """The failing relations written with the values known at that step, and where they are."""
    anchors = _anchors(step)
    known = set(_places(step)[0])
    if isinstance(step, ForwardStep):  # every place has a value now: show them all
        known |= set(step.eqn.outs)
    text = "; ".join(_render(e, env, known) for e in anchors)
    return text, anchors[0].source


def _render(e, env, known):
    def place(v):
        if v.is_const:
            return _show(v.value)
        return _show(env[v]) if v in known and v in env else _name(v)

    args = [place(v) for v in e.ins[:_MAX_ARGS]] + (["..."] if len(e.ins) > _MAX_ARGS else [])
    outs = [place(o) for o in e.outs]
    return f"{e.name}({', '.join(args)}) = {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}"


def _check_failure(schedule, step, env, theta):
    """A discrete value drawn from θ (a branch index, a comparison) that the recovered inputs contradict."""
    e = step.eqn
    computed = e.bind(*[v.value if v.is_const else env[v] for v in e.ins])
    drawn = {s.var: s.name for s in schedule.steps if isinstance(s, FreeStep)}
    parts = []
    for o, checked, val in zip(e.outs, step.check, computed):
        if checked and not bool(np.all(np.asarray(val) == np.asarray(env[o]))):
            chooser = f"θ[{drawn[o]!r}]" if o in drawn else _name(o)
            parts.append(f"{chooser} = {_show(env[o])}, but the recovered inputs give {_show(val)}")
    args = ", ".join(_show(v.value if v.is_const else env[v]) for v in e.ins[:_MAX_ARGS])
    return (f"{e.name} at {e.source}: {e.name}({args}): {'; '.join(parts)}. This θ picks a branch (case, "
            "comparison result) that does not hold at the values it leads to; another value of it may "
            "(inv.pgf(*x) gives the right one for a known x).")


def _verdict(step, consumed, produced, failed):
    if isinstance(step, ForwardStep):
        return "is not finite: the relation is evaluated outside its domain"
    unknowns = ", ".join(_name(v) for v in produced) or "its unknowns"
    if failed:
        return f"has no solution for {unknowns} (these values are outside what the relation can produce)"
    return f"gives a non-finite {unknowns} (these values are outside what the relation can produce)"


def _hint(step, consumed, schedule, from_theta, fname):
    own = [n for n in getattr(step, "theta_names", ()) if schedule.theta[n].discrete]
    choice = f" (or the discrete choice {', '.join(map(repr, own))} picks a case with no solution)" if own else ""
    continuous = [n for n in getattr(step, "theta_names", ()) if not schedule.theta[n].discrete]
    if not continuous and not any(v in from_theta for v in consumed) and not isinstance(step, FreeStep):
        return f"These values follow from y alone: y is outside the range of {fname}{choice}."
    return (f"These values are computed from y and θ: either y is outside the range of {fname}, or this θ "
            f"reaches no preimage of it{choice}. inv.pgf(*x) gives a θ that works for a known x, and "
            "inv.in_domain(y, θ) tests one.")


def _final_check(schedule, what, env, theta, from_theta, fname):
    kind, item = what
    if kind == "theta":
        spec = schedule.theta[item]
        return (f"θ[{item!r}] = {_show(theta[item])} is outside its support {spec.support} "
                f"({spec.describe()}). Choose θ in its support (inv.theta_support).")
    var, support = item, schedule.supports.get(item)
    who = f"argument '{var.label}'" if var.label else f"input {_name(var)}"
    freed = next((s.name for s in schedule.steps if isinstance(s, FreeStep) and s.var is var), None)
    if freed is not None:
        return (f"{who} is θ[{freed!r}] = {_show(env[var])}, outside its support {support}. "
                "Choose θ in its support (inv.theta_support).")
    solver = _solver_of(schedule, var)
    by = "" if solver is None else f", solved by {_primitive(solver)} at {_anchors(solver)[0].source}"
    if var in from_theta:
        hint = (f"either y is outside the range of {fname} on this support, or this θ reaches no preimage "
                "inside it (inv.pgf(*x) gives a θ that works for a known x)")
    else:
        hint = f"it follows from y alone: y is outside the range of {fname} on this support"
    return f"the solved value of {who} is {_show(env[var])}, outside its support {support}{by}: {hint}."


def _solver_of(schedule, var):
    """The step that determined ``var``."""
    return next((step for step in schedule.steps if var in _places(step)[1]), None)


# --- values -----------------------------------------------------------------------------------------
def _finite(env, variables):
    for v in variables:
        val = v.value if v.is_const else env.get(v)
        if val is not None and v.is_float and not np.all(np.isfinite(np.asarray(val))):
            return False
    return True


def _name(v):
    return v.label or f"v{v.id}"


def _show(val):
    arr = np.asarray(val)
    if arr.dtype.kind != "f":
        return np.array2string(arr, threshold=6, separator=", ")
    return np.array2string(arr, threshold=6, separator=", ", formatter={"float_kind": _float})


def _float(x):
    text = f"{x:.6g}"
    return text if any(c in text for c in ".eni") else text + ".0"  # -4.0, not -4 or -4.
