"""One relation solved by a rule of the table, spending θ (a sum, a linear map).

While the walk propagates, rules are asked without θ (``allow_theta=False``);
when it stalls, this strategy asks them again allowing θ for operands nothing
else constrains."""

from __future__ import annotations

from ..schedule.steps import SolveStep
from .base import JointSolve, Strategy


def rule_solve(e, solver, pat) -> JointSolve:
    """The :class:`JointSolve` of ``solver`` (a rule's answer to ``pat``) on relation ``e``."""
    hints = getattr(solver, "theta_hints", None) or [f"{e.prim.name}_{spec.kind}" for spec in solver.theta]
    return JointSolve(
        make_step=lambda names: SolveStep(e, solver, pat.known_in, pat.known_out, tuple(names)),
        theta=tuple(solver.theta),
        hints=tuple(hints),
        finished=(e,),
        determined=tuple(e.ins) + tuple(e.outs),
        pieces=solver,
    )


class RuleWithTheta(Strategy):
    name = "rule"

    def candidates(self, state):
        for e in state.stalled():
            solver, pat = state.find_solver(e, allow_theta=True)
            if solver is not None:
                yield rule_solve(e, solver, pat)
