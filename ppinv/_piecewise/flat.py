"""Flat pieces (:class:`FlatPiece`), and which variables a schedule computes from continuous θ
(:func:`theta_dependent`): solving through a flat piece with such values would drop posterior mass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._ir import V, Eqn


# --- flat pieces -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FlatPiece:
    """A piece of a relation on which its output does not depend on ``operand``.

    ``relation`` is solved for ``operand``; on the piece the output equals
    ``value`` (a constant or another variable) whatever ``operand`` is, within
    the region ``region`` (words, for messages). ``consumed`` are the known
    places the solve reads: when any of them is computed from continuous θ,
    the piece has posterior mass the solve cannot reach.
    """

    relation: Eqn
    operand: V
    value: V
    consumed: tuple
    region: str
    inside: object = None  # inside(read) -> bool array: the piece holds, from the program's values
    reads: tuple = ()  # the variables ``inside`` reads

    @property
    def key(self):
        return (self.relation, self.operand, self.value)

    def refusal(self, reason="") -> str:
        value = repr(np.asarray(self.value.value)) if self.value.is_const else repr(self.value)
        return (
            f"the relation\n    {self.relation.describe()}\nhas a flat piece: where {self.region}, its output equals "
            f"{value} whatever {self.operand!r} is. It is solved for {self.operand!r} from values computed from θ, "
            "so that piece holds posterior mass that solving would drop, and ppinv found no schedule that "
            f"computes {self.operand!r} before this relation instead{reason}. Make {self.operand!r} (or what it "
            "is computed from) a free parameter with free=... so the relation is evaluated forwards, rewrite "
            "the program so that it can be, or declare the inverse of the enclosing function with "
            "@ppinv.custom_inverse."
        )


def theta_dependent(steps, theta, seeds=()):
    """The variables a schedule's ``steps`` compute from *continuous* θ (directly or not).

    ``seeds`` are variables to count as θ-dependent from the start (the known
    inputs and observations of a schedule nested in another one, whose values
    may come from the enclosing schedule's θ). Discrete θ does not count: for
    each of its values the computed variables are functions of the observations.
    """
    from ..schedule import BlockStep, ForwardStep, FreeStep, PolyStep, SolveStep

    dep = {v for v in seeds if not v.is_const}

    def continuous(names):
        return any(not theta[n].discrete for n in names)

    def flow(consumed, produced, names):
        if continuous(names) or any(v in dep for v in consumed):
            dep.update(v for v in produced if not v.is_const)

    for s in steps:
        if isinstance(s, FreeStep):
            flow((), (s.var,), (s.name,))
        elif isinstance(s, ForwardStep):
            checked = s.check or (False,) * len(s.eqn.outs)
            flow(s.eqn.ins, [o for o, k in zip(s.eqn.outs, checked) if not k], ())
        elif isinstance(s, SolveStep):
            e = s.eqn
            places = list(zip(e.ins, s.known_in)) + list(zip(e.outs, s.known_out))
            flow([v for v, k in places if k], [v for v, k in places if not k], s.theta_names)
        elif isinstance(s, PolyStep):
            b = s.block
            flow([b.anchor.outs[0], *b.known_inputs], (b.leaf,), s.theta_names)
        elif isinstance(s, BlockStep):
            b = s.block
            flow([o for e in b.anchors for o in e.outs] + list(b.known_inputs), b.leaves, s.theta_names)
    return dep


def _step_flat_pieces(step):
    from ..schedule import PolyStep, SolveStep

    if isinstance(step, SolveStep):
        return getattr(step.solver, "flat_pieces", ())
    if isinstance(step, PolyStep):
        return getattr(step.block, "flat_pieces", ())
    return ()


def theta_dependent_flat_pieces(steps, theta, seeds=()):
    """The flat pieces of ``steps`` solved through with θ-dependent values, in step order."""
    dep = theta_dependent(steps, theta, seeds)
    return [p for s in steps for p in _step_flat_pieces(s) if any(v in dep for v in p.consumed)]
