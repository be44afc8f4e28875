"""What every joint-solve strategy sees and returns.

A strategy looks at the search state when the walk stalls (no relation can be
solved on its own without θ) and proposes :class:`JointSolve` candidates, best
first. The search (``ppinv.schedule.search``) takes the first candidate whose
continuous θ fits the remaining budget (``dim X − dim Y`` minus what is spent),
charges it, adds its θ to the plan and its step to the schedule — in one place,
for every kind of solve.

The search state a strategy may read (:class:`SearchState`, the scheduler):

* ``stalled()`` — pending relations with a known output, in program order;
* ``is_known(v)``, ``pending`` (relations not yet settled), ``definer[v]``
  (the relation computing ``v``), ``users[v]`` (relations reading it),
  ``order[e]`` (position in the program);
* ``supports`` (variable → support), ``table`` (the rule table, with its slots),
  ``structure`` (which known values move with θ; ``_block.KnownStructure``),
  ``names`` (user-facing names of variables), ``budget`` (θ dimensions left);
* ``find_solver(e, allow_theta)`` — ``(solver, pattern)`` from the rule table.

A strategy must not change the state: it only proposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from ..schedule.steps import BlockStep


@dataclass
class JointSolve:
    """One proposed solve: the plan step it adds and what it settles.

    ``make_step(theta_names)`` builds the step once its θ have names; ``theta``
    are their :class:`ppinv.theta.ThetaSpec`, ``hints`` the base names.
    ``finished`` are the relations it settles, ``determined`` the variables it
    makes known. ``pieces`` is the solver or block when it may solve through flat
    pieces of a piecewise function (``_piecewise.py``), so the search can refuse
    a piece with posterior mass.
    """

    make_step: Callable
    theta: tuple
    hints: tuple
    finished: tuple
    determined: tuple
    pieces: object = None

    @property
    def continuous_size(self) -> int:
        return sum(spec.continuous_size for spec in self.theta)


class SearchState(Protocol):  # pragma: no cover - documentation of the interface
    pending: set
    definer: dict
    users: dict
    order: dict
    supports: dict
    budget: int

    def stalled(self) -> list: ...

    def is_known(self, v) -> bool: ...

    def find_solver(self, e, allow_theta: bool): ...


class Strategy:
    """A kind of joint solve. Subclasses set ``name`` and implement :meth:`candidates`.

    ``stage`` says when the search asks: ``"stalled"`` strategies are asked, in
    registry order, whenever the walk stalls and before any variable is freed;
    ``"last_resort"`` strategies only when no variable can be freed either.

    A strategy declines a candidate by proposing nothing for it, or by raising
    :class:`ppinv.errors.InversionError` while building it (in :meth:`candidates` or in the
    candidate's ``make_step``) with the reason: the search then asks for the next candidate
    (a generator that raised has none), then the next strategy, and names the reason in its
    error if nothing else works.
    """

    name = "strategy"
    stage = "stalled"

    def candidates(self, state: SearchState) -> Iterable[JointSolve]:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self):
        return f"<ppinv joint strategy {self.name!r} ({self.stage})>"


def block_solve(block, hints=None, finished=None, determined=None) -> JointSolve:
    """The :class:`JointSolve` of a block (``schedule.steps.BlockStep``): its θ, named by ``hints``
    (default ``block.theta_hints``), settling ``finished`` (default its anchors) and determining
    ``determined`` (default its leaves)."""
    theta = tuple(block.theta)
    return JointSolve(
        make_step=lambda names: BlockStep(block, tuple(names)),
        theta=theta,
        hints=tuple(hints if hints is not None else getattr(block, "theta_hints", ())),
        finished=tuple(finished if finished is not None else block.anchors),
        determined=tuple(determined if determined is not None else block.leaves),
    )
