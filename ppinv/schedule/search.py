"""Reorientation: the search for the order in which the relations of a program are solved.

Given which variables are known (constants, context inputs, observations), the
search walks the relations and turns each into exactly one step (``steps.py``):

* **forward** — every input known: evaluate the primitive;
* **solve** — an output known: ask the rule table for a solver of the unknown
  inputs (no θ while propagating);
* **joint** — when the walk stalls, the strategies of ``ppinv.joint`` are asked
  in order (a rule spending θ, a linear block, polar coordinates, a polynomial,
  a piecewise or a monotone function of one variable); the first candidate that
  fits the θ budget and builds is taken (an InversionError while a strategy builds
  one declines that candidate; ``Search.strategy_declines``);
* **free** — when no strategy moves, a variable is drawn from θ outright; the
  candidates are ranked by ``ranking.py`` and a choice that later
  over-determines a relation is undone and the next one tried (bounded
  backtracking), so the ranking only has to rank, not to be right;
* **check** — a relation whose every place became known by other means. For
  discrete outputs (a predicate, a branch index) this is a domain check on the
  recovered values; for continuous outputs it means the observations
  over-determine the program, which is an error naming the relation.

The number of continuous θ dimensions is ``dim X − dim Y`` by construction
(every rule is dimension-balanced). Every step that adds θ goes through
:meth:`Search.commit`, the one place the budget is charged; a program that
cannot be reoriented fails here, at build time, with the relations that could
not be solved (``stuck.py``). :func:`~ppinv.schedule.build.build_schedule` runs it
(``build.py``); ``checks.py`` holds the refusals of observations no schedule can have.
"""

from __future__ import annotations

import numpy as np
from numpyro.distributions import constraints

from .._block import KnownStructure
from .._piecewise import theta_dependent
from ..errors import FlatPieceError, InversionError, OverdeterminedError, UnderdeterminedError
from ..graph import backward_slice
from ..joint import JointSolve, rule_solve, strategies
from ..rules import Pattern
from ..theta import ThetaSpec, int_dtype
from .ranking import FreeQueue, discrete_support, free_candidates, is_discrete
from .steps import ForwardStep, FreeStep, Schedule
from .checks import check_not_overdetermined, validate_outputs
from .stuck import declines_note, raise_stuck
from .supports import propagate_supports

_MAX_DECISIONS = 64  # decision points remembered for backtracking
_MAX_BACKTRACKS = 32  # alternative choices tried before giving up


class Search:
    """The state of one reorientation (see :class:`ppinv.joint.SearchState` for what strategies read)."""

    def __init__(self, program, known_inputs, unknown_inputs, observed, supports, table, names, extra_outputs=(),
                 free=(), flat_ok=False, outer_theta=True, typical=None):
        self.program = program
        # flat pieces (``_piecewise.py``): solving through one with θ-dependent values is refused
        # (and another schedule tried) unless ``flat_ok``; in a nested schedule the known inputs
        # and observations may themselves come from the enclosing schedule's θ
        self.flat_ok = flat_ok
        self.theta_seeds = (list(known_inputs) + list(observed)) if outer_theta else []
        self.flat_refusals = []
        self.free_first = list(free)
        self.table = table
        self.known_inputs = list(known_inputs)
        self.unknown_inputs = list(unknown_inputs)
        self.observed = list(observed)
        self.extra_outputs = list(extra_outputs)
        self.names = dict(names)
        self.input_set = set(unknown_inputs)
        self.steps = []
        self.theta = {}
        self._name_counts = {}
        self.solve_costs = {}
        self.free_classes = {}  # variable -> its fixed part of the freeing order (ranking.py)
        self.strategy_failures = []  # (strategy name, exception) of strategies that raised
        self.strategy_declines = []  # (strategy name, InversionError) of candidates that could not be built
        self.own_refusal = None  # the first of them from one of ppinv's own strategies (``_refusal``)

        self._validate_outputs()
        self.relevant = self._relevant_eqns()
        self.order = {e: i for i, e in enumerate(self.relevant)}
        self.users = {}
        self.definer = {}
        for e in self.relevant:
            for v in set(e.ins):
                if not v.is_const:
                    self.users.setdefault(v, []).append(e)
            for o in e.outs:
                self.definer[o] = e
        self.pending_uses = {v: len(es) for v, es in self.users.items()}
        self.pending = set(self.relevant)
        self.supports = propagate_supports(self.relevant, self.table, supports)
        # which known values are the same at every θ, and generic values of the others
        # (linear solves choose their pivots with them, ``_block.py``)
        self.structure = KnownStructure(
            self.relevant, self.supports, fixed=() if outer_theta else list(known_inputs) + list(observed),
            typical=typical,
        )
        self.known = set(self.known_inputs) | set(self.observed)
        # pending relations with a known output, kept up to date (``_mark_known``, ``_finish``)
        self._stalled = {self.definer[v] for v in self.known if v in self.definer}
        n = sum(v.size for v in self.unknown_inputs)
        m = sum(v.size for v in self.observed if v not in self.input_set)
        m_direct = sum(v.size for v in self.observed if v in self.input_set)
        self.budget = n - m - m_direct
        self.free_queue = FreeQueue(self)  # what may be freed, ranked (kept up to date: _mark_known, _finish)
        if self.budget < 0:  # more constraints than unknowns: over-determined (errors.py)
            raise OverdeterminedError(
                f"over-determined: the program has {n} unknown input dimensions but {m + m_direct} observed "
                "output dimensions: at most as many dimensions can be observed as there are unknowns. "
                "Observe fewer outputs or add latent inputs."
            )

    # -- set-up ---------------------------------------------------------------------
    def _validate_outputs(self):
        validate_outputs(self.observed, self.known_inputs)

    def _relevant_eqns(self):
        return backward_slice(self.program.eqns, list(self.observed) + list(self.extra_outputs))[0]

    # -- what strategies read -----------------------------------------------------------
    def is_known(self, v):
        return v.is_const or v in self.known

    def stalled(self):
        """Pending relations with a known output, in program order."""
        return sorted(self._stalled, key=self.order.__getitem__)

    def rules(self, e):
        name = e.function
        fn_rule = self.table.function_rule(name) if name is not None else None
        return ([fn_rule] if fn_rule is not None else []) + self.table.rules_for(e.prim)

    def find_solver(self, e, allow_theta):
        pat = self._pattern(e, allow_theta)
        for rule in self.rules(e):
            solver = rule(pat)
            if solver is not None:
                return solver, pat
        return None, pat

    def _pattern(self, e, allow_theta=False):
        return Pattern(
            eqn=e,
            known_in=tuple(self.is_known(v) for v in e.ins),
            known_out=tuple(self.is_known(o) for o in e.outs),
            in_support=tuple(self.supports.get(v) for v in e.ins),
            out_support=tuple(self.supports.get(o) for o in e.outs),
            allow_theta=allow_theta,
            exclusive=tuple((not v.is_const) and self.pending_uses.get(v, 0) == 1 for v in e.ins),
            table=self.table,
            structure=self.structure,
        )

    # -- the walk -----------------------------------------------------------------------
    def run(self):
        queue = list(self.relevant)
        for v in self.free_first:  # the caller's choice of θ, before any heuristic
            if v in self.known:
                continue
            if not is_discrete(v) and v.size > self.budget:  # more θ than dim X − dim Y: under-determined
                raise UnderdeterminedError(
                    f"cannot make {self.names.get(v, repr(v))} a free parameter: it has {v.size} dimension(s) but "
                    f"only {self.budget} are left once the observations are accounted for. Free fewer variables."
                )
            self.free(v, queue)
        # inputs nothing observed depends on are free outright
        for v in self.unknown_inputs:
            if v not in self.known and not self.users.get(v) and v not in self.definer:
                self.free(v, queue)
        decisions = []
        first_error = None
        attempts = 0
        while True:
            try:
                self._propagate(queue)
                if not self.pending:
                    break
                if self._unstick("stalled", queue):
                    continue
                candidates = free_candidates(self)
                if not candidates:
                    if self._unstick("last_resort", queue):
                        continue
                    raise_stuck(self)
                if len(decisions) < _MAX_DECISIONS:
                    decisions.append((self._snapshot(), candidates, 1))
                self.free(candidates[0], queue)
            except InversionError as err:
                first_error = first_error or err
                queue = []
                while decisions:
                    snap, candidates, i = decisions.pop()
                    if i < len(candidates) and attempts < _MAX_BACKTRACKS:
                        attempts += 1
                        self._restore(snap)
                        decisions.append((snap, candidates, i + 1))
                        self.free(candidates[i], queue)
                        break
                else:
                    raise self._refusal(first_error)
        for v in self.unknown_inputs:
            if v not in self.known:  # pragma: no cover - guarded by the walk
                raise InversionError(f"internal: input {v!r} was never determined")
        return Schedule(
            self.steps, self.theta, self.known_inputs, self.unknown_inputs, self.observed, self.supports,
            extra_outputs=list(self.extra_outputs),
        )

    def _unstick(self, stage, queue):
        """Take the first candidate of the strategies of ``stage`` that fits the budget and builds."""
        for strategy in strategies(stage):
            for found in self._fitting(strategy):
                if self.commit(found, queue, strategy):
                    return True
        return False

    def _fitting(self, strategy):
        """The candidates of ``strategy`` that fit the budget, in its order.

        An :class:`InversionError` while the strategy builds a candidate is that candidate
        declined (kept in ``strategy_declines`` for the error if nothing else works), and
        the strategy is asked for its next one (a generator that raised has none). Any other
        exception is a strategy failing to read a program it was not written for (a user's,
        or one of ppinv's on an unforeseen pattern): it proposes nothing more, and the other
        strategies, or the refusal naming the stalled relations, decide (``strategy_failures``).
        """
        try:
            found_all = iter(strategy.candidates(self))
            while True:
                try:
                    found = next(found_all)
                except InversionError as err:
                    self._decline(strategy, err)
                    continue
                if found.continuous_size <= self.budget:
                    yield found
        except StopIteration:
            return
        except InversionError as err:  # raised by candidates() itself, before any candidate
            self._decline(strategy, err)
        except Exception as err:  # noqa: BLE001
            self.strategy_failures.append((strategy.name, err))

    def _decline(self, strategy, err):
        self.strategy_declines.append((strategy.name, err))
        if self.own_refusal is None and type(strategy).__module__.startswith("ppinv."):
            self.own_refusal = err

    def _refusal(self, err):
        """The error when no schedule is found. ppinv's own strategies decline a block with the
        reason it cannot be solved (a rank-deficient linear block, an unknown that cancels out, a
        flat piece): the first such reason is the refusal, the search's own failure (``err``, often
        a consequence: nothing else moves) then follows it; other declines are listed after."""
        lead = self.own_refusal or err
        notes = declines_note(self, leave_out=lead)
        if lead is not err:
            notes = f"\n(Without that solve the search stopped at: {str(err).splitlines()[0].rstrip(':')})" + notes
        if notes and len(lead.args) == 1 and isinstance(lead.args[0], str) and notes not in lead.args[0]:
            lead.args = (lead.args[0] + notes,)
        return lead

    def commit(self, found: JointSolve, queue, strategy=None):
        """Add ``found`` to the plan: its θ (charged to the budget), its step, what it settles.

        If building the step raises an :class:`InversionError` and ``found`` came from
        ``strategy``, the candidate is declined: nothing changes and the answer is False."""
        self._check_flat_pieces(found.pieces)
        try:
            step = self._named_step(found)
        except InversionError as err:
            if strategy is None:
                raise
            self._decline(strategy, err)
            return False
        self.budget -= found.continuous_size
        self.steps.append(step)
        for e in found.finished:
            self._finish(e)
        for v in found.determined:
            self._mark_known(v, queue)
        return True

    def _named_step(self, found):
        """``found``'s step, its θ named and added to the plan (taken out again if it fails)."""
        counts = {b: self._name_counts.get(b) for b in (h.replace(" ", "_") for h in found.hints)}
        names = [self._add_theta(spec, hint) for spec, hint in zip(found.theta, found.hints)]
        try:
            return found.make_step(names)
        except InversionError:
            for n in names:
                del self.theta[n]
            for b, k in counts.items():
                if k is None:
                    self._name_counts.pop(b, None)
                else:
                    self._name_counts[b] = k
            raise

    def free(self, v, queue):
        """Draw ``v`` from θ outright."""
        if is_discrete(v):
            spec = ThetaSpec(v.shape, np.dtype(int_dtype()), discrete_support(self, v), "branch", repr(v))
        else:
            sup = self.supports.get(v)
            spec = ThetaSpec(v.shape, v.dtype, sup if sup is not None else constraints.real, "value",
                             self.names.get(v, repr(v)))
        hint = self.names.get(v) or self._intermediate_name(v)
        self.commit(JointSolve(lambda names: FreeStep(v, names[0]), (spec,), (hint,), (), (v,)), queue)

    def _snapshot(self):
        return (
            set(self.known),
            len(self.steps),
            dict(self.theta),
            self.budget,
            set(self.pending),
            dict(self.pending_uses),
            dict(self._name_counts),
            set(self._stalled),
        )

    def _restore(self, snap):
        known, n_steps, theta, budget, pending, uses, names, stalled = snap
        self.known, self.theta, self.budget = set(known), dict(theta), budget
        self.pending, self.pending_uses, self._name_counts = set(pending), dict(uses), dict(names)
        self._stalled = set(stalled)
        del self.steps[n_steps:]
        self.free_queue.rebuild()

    def _propagate(self, queue):
        while queue:
            e = queue.pop()
            if e not in self.pending:
                continue
            kin = [self.is_known(v) for v in e.ins]
            kout = [self.is_known(o) for o in e.outs]
            if all(kin):
                if any(kout):
                    self._check_overdetermined(e, kout)
                self.steps.append(ForwardStep(e, tuple(kout) if any(kout) else ()))
                self._finish(e)
                for o in e.outs:
                    self._mark_known(o, queue)
            elif any(kout):
                solver, pat = self.find_solver(e, allow_theta=False)
                if solver is not None:
                    self.commit(rule_solve(e, solver, pat), queue)

    def _check_overdetermined(self, e, kout):
        check_not_overdetermined(e, kout)

    def _check_flat_pieces(self, solver):
        """Refuse a solve that would drop a flat piece holding posterior mass (``_piecewise.py``)."""
        pieces = getattr(solver, "flat_pieces", ())
        if not pieces or self.flat_ok:
            return
        dep = theta_dependent(self.steps, self.theta, self.theta_seeds)
        for p in pieces:
            if any(v in dep for v in p.consumed):
                self.flat_refusals.append(p)
                raise FlatPieceError(p.refusal())

    # -- bookkeeping ------------------------------------------------------------------
    def _theta_name(self, base):
        base = base.replace(" ", "_")
        if base not in self._name_counts and base not in self.theta:
            self._name_counts[base] = 1
            return base
        k = self._name_counts.get(base, 1)
        while f"{base}_{k}" in self.theta:
            k += 1
        self._name_counts[base] = k + 1
        return f"{base}_{k}"

    def _add_theta(self, spec, base):
        name = self._theta_name(base)
        self.theta[name] = spec
        return name

    def _intermediate_name(self, v):
        d = self.definer.get(v)
        return f"{d.prim.name}_value" if d is not None else "input"

    def _mark_known(self, v, queue):
        if v.is_const or v in self.known:
            return
        self.known.add(v)
        self.free_queue.known(v)
        queue.extend(self.users.get(v, ()))
        d = self.definer.get(v)
        if d is not None:
            queue.append(d)
            if d in self.pending:
                self._stalled.add(d)

    def _finish(self, e):
        was_pending = e in self.pending
        self.pending.discard(e)
        self._stalled.discard(e)
        for v in set(e.ins):
            if v in self.pending_uses:
                self.pending_uses[v] -= 1
        if was_pending:
            self.free_queue.finished(e)
        else:  # settled a second time: the uses counted above went down all the same
            self.free_queue.rerank(v for v in set(e.ins) if not v.is_const)
