"""A kept call (``custom_vjp``, or a function whose own rule declined) solved backwards through its
body, inverted as the one branch of a cond."""

from __future__ import annotations

from ..._compat import CALL_PRIMITIVES, CUSTOM_VJP_P
from ..table import DEFAULT_RULES
from .cond import _CondSolver, _cond_solver


class _CallSolver(_CondSolver):
    """A kept call solved backwards: its body inverted as the one branch of a cond.

    A ``custom_vjp`` call is kept whole in the program (``_ir``) so that, evaluated forward, it
    keeps its reverse rule; solved backwards, its custom rule says nothing about the inverse, so
    the body is inverted like any other program (a ``while_loop`` in it is refused with its
    reason). A function rule that declines a call it does not recognise (a user's own function
    that shares a library function's name) falls back to this too.
    """

    n_index = 0

    def __init__(self, pat):
        super().__init__(pat)
        self.description = f"invert the body of {self._where(0, pat.eqn)}"

    def _bodies(self, eqn):
        return [eqn.params[CALL_PRIMITIVES[eqn.prim]]]

    def _where(self, k, eqn):
        kind = "custom_vjp function" if eqn.prim is CUSTOM_VJP_P else "function"
        return f"the {kind} {eqn.function or ''} at {eqn.source}".replace("  ", " ")

    def pgf(self, ins, outs):
        from ...schedule import theta_from_env

        if not self.theta:
            return ()
        _, env = self.branches[0].evaluate(*self._variable_values(ins), record=True)
        return self._cond_theta(0, theta_from_env(self.subs[0], env))

    def _run_branch(self, index, branches, *args):
        return branches[0](*args)


def call_body_rule(pat):
    """Solve a kept call (``custom_vjp``, or a function whose own rule declined) through its body."""
    if not any(pat.known_out) or all(pat.known_in):
        return None  # nothing to solve; with every input known the call is evaluated forward
    solver = _cond_solver(pat, _CallSolver)
    if not pat.allow_theta and any(not s.discrete for s in solver.theta):
        return None  # as for a cond: θ waits until nothing else can move
    return solver


DEFAULT_RULES.register(CUSTOM_VJP_P, call_body_rule)
