"""Reorientation: the order in which the relations of a program are solved.

Given which variables are known (constants, context inputs, observations), the
scheduler walks the relations and turns each into exactly one step:

* **forward** — every input known: evaluate the primitive;
* **solve** — an output known: ask the rule table for a solver of the unknown
  inputs (no θ while propagating);
* **free** — when nothing else can move, a rule may consume θ for an operand
  that nothing else constrains (a sum, a linear map), or a variable is drawn
  from θ outright. Candidates are ranked (DESIGN §3): a discrete variable a
  relation is waiting on; then the variable with the most pending uses (fan-out
  is resolved by freeing the shared value); then an input with a constrained
  support (θ then carries it); inputs before intermediates; then the one whose
  use would be the most awkward to solve through (a restricted domain such as
  ``sin``, then products — so the rest is solved by subtraction rather than by
  division or arcsine). A choice that later over-determines a relation is
  undone and the next candidate tried (bounded backtracking);
* **check** — a relation whose every place became known by other means. For
  discrete outputs (a predicate, a branch index) this is a domain check on the
  recovered values; for continuous outputs it means the observations
  over-determine the program, which is an error naming the relation.

The number of continuous θ dimensions is ``dim X − dim Y`` by construction
(every rule is dimension-balanced); freeing a variable that would exceed it is
refused, so a program that cannot be reoriented fails here, at build time, with
the relations that could not be solved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ._block import KnownStructure, LinearBlock, PieceRankError, is_linear
from ._compat import is_concrete
from ._piecewise import FlatPieceError, PiecewiseBlock, UnionSchedule, piecewise_cone, theta_dependent, union_of_flat_pieces
from ._monotone import MonotoneBlock, derivative_sign, is_elementwise_analytic
from ._polar import PolarBlock
from ._poly import PolynomialBlock, cone_degree, poly_degree, worth_solving
from .errors import InversionError, NoRuleError, OverdeterminedError, UnderdeterminedError
from .rules import Pattern
from .rules.structural import entry_split_block
from .theta import ThetaSpec, int_dtype, is_constrained

_MAX_DECISIONS = 64  # decision points remembered for backtracking
_MAX_BACKTRACKS = 32  # alternative choices tried before giving up
_MAX_CANDIDATES = 4  # alternatives per decision

_NONLINEAR = {
    p
    for p in (lax.mul_p, lax.div_p, lax.pow_p, lax.integer_pow_p, getattr(lax, "square_p", None), lax.dot_general_p)
    if p is not None
}


# --- steps ---------------------------------------------------------------------------
@dataclass
class FreeStep:
    var: object
    name: str

    def describe(self):
        return f"free   {self.var!r} <- θ[{self.name!r}]"


@dataclass
class ForwardStep:
    """Evaluate a relation; outputs already known (discrete ones) are checked instead."""

    eqn: object
    check: tuple = ()

    def describe(self):
        verb = "check " if self.check and all(self.check) else "fwd   "
        return f"{verb} {self.eqn.describe()}"


@dataclass
class SolveStep:
    eqn: object
    solver: object
    known_in: tuple
    known_out: tuple
    theta_names: tuple

    def describe(self):
        extra = f"  θ: {', '.join(self.theta_names)}" if self.theta_names else ""
        what = self.solver.description or "solve"
        return f"solve  {self.eqn.describe()}\n         [{what}]{extra}"


@dataclass
class BlockStep:
    """A joint linear solve of several relations (see ``_block.py``)."""

    block: object
    theta_names: tuple

    def describe(self):
        rels = "\n         ".join(e.describe() for e in self.block.anchors)
        extra = f"  θ: {', '.join(self.theta_names)}" if self.theta_names else ""
        return f"block  {rels}\n         [{self.block.description}]{extra}"


@dataclass
class PolyStep:
    """One variable solved from one relation through a block of relations between them:
    a polynomial (``_poly.py``) or a piecewise function (``_piecewise.py``)."""

    block: object
    theta_names: tuple

    def describe(self):
        extra = f"  θ: {', '.join(self.theta_names)}" if self.theta_names else ""
        return f"joint  {self.block.anchor.describe()}\n         [{self.block.description}]{extra}"


@dataclass
class Schedule:
    """The static plan of an inverse: steps plus what θ looks like."""

    steps: list
    theta: dict  # name -> ThetaSpec, in the order the steps consume them
    known_inputs: list
    unknown_inputs: list
    observed: list
    supports: dict = field(default_factory=dict)
    extra_outputs: list = field(default_factory=list)

    @property
    def n_theta(self) -> int:
        return sum(s.continuous_size for s in self.theta.values())

    def describe(self) -> str:
        return "\n".join(f"{i:4d}  {s.describe()}" for i, s in enumerate(self.steps))


# --- the scheduler --------------------------------------------------------------------
def _is_discrete(v) -> bool:
    return not v.is_float


class _Scheduler:
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
        self._costs = {}

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
        self.supports = self._infer_supports(supports)
        # which known values are the same at every θ, and generic values of the others
        # (linear solves choose their pivots with them, ``_block.py``)
        self.structure = KnownStructure(
            self.relevant, self.supports, fixed=() if outer_theta else list(known_inputs) + list(observed),
            typical=typical,
        )
        self.known = set(self.known_inputs) | set(self.observed)
        n = sum(v.size for v in self.unknown_inputs)
        m = sum(v.size for v in self.observed if v not in self.input_set)
        m_direct = sum(v.size for v in self.observed if v in self.input_set)
        self.budget = n - m - m_direct
        if self.budget < 0:  # more constraints than unknowns: over-determined (errors.py)
            raise OverdeterminedError(
                f"over-determined: the program has {n} unknown input dimensions but {m + m_direct} observed "
                "output dimensions: at most as many dimensions can be observed as there are unknowns. "
                "Observe fewer outputs or add latent inputs."
            )

    # -- set-up ---------------------------------------------------------------------
    def _validate_outputs(self):
        seen = set()
        for i, v in enumerate(self.observed):
            if v.is_const:
                raise InversionError(
                    f"output {i} of the program is the constant {np.asarray(v.value)!r}; it does not depend "
                    "on the unknown inputs and cannot be observed. Return only outputs computed from them."
                )
            if v in seen:
                raise OverdeterminedError(
                    f"output {i} is the same variable as an earlier output; observing it twice "
                    "over-determines it. Return it once."
                )
            if v in set(self.known_inputs):
                raise InversionError(f"output {i} is a known input passed straight through; it cannot be observed.")
            if not v.is_float:
                raise InversionError(
                    f"output {i} has dtype {v.dtype.name}; only floating outputs can be observed "
                    "(a discrete output carries no density)."
                )
            seen.add(v)

    def _relevant_eqns(self):
        needed = set(self.observed) | set(self.extra_outputs)
        keep = []
        for e in reversed(self.program.eqns):
            if any(o in needed for o in e.outs):
                keep.append(e)
                needed.update(v for v in e.ins if not v.is_const)
        keep.reverse()
        return keep

    def _infer_supports(self, given):
        return propagate_supports(self.relevant, self.table, given)

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

    def _mark_known(self, v, queue):
        if v.is_const or v in self.known:
            return
        self.known.add(v)
        queue.extend(self.users.get(v, ()))
        d = self.definer.get(v)
        if d is not None:
            queue.append(d)

    def _finish(self, e):
        self.pending.discard(e)
        for v in set(e.ins):
            if v in self.pending_uses:
                self.pending_uses[v] -= 1

    def _is_known(self, v):
        return v.is_const or v in self.known

    def _pattern(self, e, allow_theta=False):
        return Pattern(
            eqn=e,
            known_in=tuple(self._is_known(v) for v in e.ins),
            known_out=tuple(self._is_known(o) for o in e.outs),
            in_support=tuple(self.supports.get(v) for v in e.ins),
            out_support=tuple(self.supports.get(o) for o in e.outs),
            allow_theta=allow_theta,
            exclusive=tuple((not v.is_const) and self.pending_uses.get(v, 0) == 1 for v in e.ins),
            table=self.table,
            structure=self.structure,
        )

    def _rules(self, e):
        name = e.function
        fn_rule = self.table.function_rule(name) if name is not None else None
        return ([fn_rule] if fn_rule is not None else []) + self.table.rules_for(e.prim)

    def _find_solver(self, e, allow_theta):
        pat = self._pattern(e, allow_theta)
        for rule in self._rules(e):
            solver = rule(pat)
            if solver is not None:
                return solver, pat
        return None, pat

    # -- the walk -----------------------------------------------------------------------
    def run(self):
        queue = list(self.relevant)
        for v in self.free_first:  # the caller's choice of θ, before any heuristic
            if v in self.known:
                continue
            if not _is_discrete(v) and v.size > self.budget:  # more θ than dim X − dim Y: under-determined
                raise UnderdeterminedError(
                    f"cannot make {self.names.get(v, repr(v))} a free parameter: it has {v.size} dimension(s) but "
                    f"only {self.budget} are left once the observations are accounted for. Free fewer variables."
                )
            self._free(v, queue)
        # inputs nothing observed depends on are free outright
        for v in self.unknown_inputs:
            if v not in self.known and not self.users.get(v) and v not in self.definer:
                self._free(v, queue)
        # Greedy walk with bounded backtracking over the choice of freed variables:
        # a choice that later over-determines a relation is undone and the next
        # candidate tried, so the heuristic only has to rank, not to be right.
        decisions = []
        first_error = None
        attempts = 0
        while True:
            try:
                self._propagate(queue)
                if not self.pending:
                    break
                if (
                    self._unstick_with_rule(queue)
                    or self._unstick_with_block(queue)
                    or self._unstick_with_polar(queue)
                    or self._unstick_with_poly(queue)
                    or self._unstick_with_piecewise(queue)
                    or self._unstick_with_monotone(queue)
                ):
                    continue
                candidates = self._free_candidates()
                if not candidates:
                    if self._unstick_with_split(queue):
                        continue
                    self._raise_stuck()
                if len(decisions) < _MAX_DECISIONS:
                    decisions.append((self._snapshot(), candidates, 1))
                self._free(candidates[0], queue)
            except InversionError as err:
                first_error = first_error or err
                queue = []
                while decisions:
                    snap, candidates, i = decisions.pop()
                    if i < len(candidates) and attempts < _MAX_BACKTRACKS:
                        attempts += 1
                        self._restore(snap)
                        decisions.append((snap, candidates, i + 1))
                        self._free(candidates[i], queue)
                        break
                else:
                    raise first_error
        for v in self.unknown_inputs:
            if v not in self.known:  # pragma: no cover - guarded by the walk
                raise InversionError(f"internal: input {v!r} was never determined")
        return Schedule(
            self.steps, self.theta, self.known_inputs, self.unknown_inputs, self.observed, self.supports,
            extra_outputs=list(self.extra_outputs),
        )

    def _snapshot(self):
        return (
            set(self.known),
            len(self.steps),
            dict(self.theta),
            self.budget,
            set(self.pending),
            dict(self.pending_uses),
            dict(self._name_counts),
        )

    def _restore(self, snap):
        known, n_steps, theta, budget, pending, uses, names = snap
        self.known, self.theta, self.budget = set(known), dict(theta), budget
        self.pending, self.pending_uses, self._name_counts = set(pending), dict(uses), dict(names)
        del self.steps[n_steps:]

    def _propagate(self, queue):
        while queue:
            e = queue.pop()
            if e not in self.pending:
                continue
            kin = [self._is_known(v) for v in e.ins]
            kout = [self._is_known(o) for o in e.outs]
            if all(kin):
                if any(kout):
                    self._check_overdetermined(e, kout)
                self.steps.append(ForwardStep(e, tuple(kout) if any(kout) else ()))
                self._finish(e)
                for o in e.outs:
                    self._mark_known(o, queue)
            elif any(kout):
                solver, pat = self._find_solver(e, allow_theta=False)
                if solver is not None:
                    self._apply(e, solver, pat, queue)

    def _check_overdetermined(self, e, kout):
        cont = [o for o, k in zip(e.outs, kout) if k and o.is_float]
        if cont:
            raise OverdeterminedError(
                "over-determined: the relation\n    "
                + e.describe()
                + f"\nhas every place known already ({', '.join(map(repr, cont))} was determined by other "
                "relations), so it would constrain the values twice. The observations determine these "
                "variables more than once: observe fewer outputs, or check that the observed outputs are "
                "independent."
            )

    def _apply(self, e, solver, pat, queue):
        self._check_flat_pieces(solver)
        names = []
        hints = getattr(solver, "theta_hints", None) or [f"{e.prim.name}_{spec.kind}" for spec in solver.theta]
        for spec, hint in zip(solver.theta, hints):
            names.append(self._add_theta(spec, hint))
            self.budget -= spec.continuous_size
        self.steps.append(SolveStep(e, solver, pat.known_in, pat.known_out, tuple(names)))
        self._finish(e)
        for v in list(e.ins) + list(e.outs):
            self._mark_known(v, queue)

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

    def _free(self, v, queue):
        sup = self.supports.get(v)
        if _is_discrete(v):
            sup = self._discrete_support(v)
            spec = ThetaSpec(v.shape, np.dtype(int_dtype()), sup, "branch", repr(v))
        else:
            sup = sup if sup is not None else (constraints.real if not v.shape else constraints.real)
            spec = ThetaSpec(v.shape, v.dtype, sup, "value", self.names.get(v, repr(v)))
            self.budget -= spec.continuous_size
        name = self._add_theta(spec, self.names.get(v) or self._intermediate_name(v))
        self.steps.append(FreeStep(v, name))
        self._mark_known(v, queue)

    def _intermediate_name(self, v):
        d = self.definer.get(v)
        return f"{d.prim.name}_value" if d is not None else "input"

    def _discrete_support(self, v):
        if v.dtype == np.bool_:
            return constraints.integer_interval(0, 1)
        d = self.definer.get(v)
        if d is not None and d.prim is lax.convert_element_type_p and d.ins[0].dtype == np.bool_:
            return constraints.integer_interval(0, 1)
        for e in self.users.get(v, ()):
            n = e.params.get("branches")
            if n is not None and e.ins[0] is v:
                return constraints.integer_interval(0, len(n) - 1)
            if e.prim is lax.select_n_p and e.ins[0] is v:  # the index of one of its cases
                return constraints.integer_interval(0, len(e.ins) - 2)
        from .theta import integer

        return integer

    # -- when stuck ----------------------------------------------------------------------
    def _stalled(self):
        out = [e for e in self.pending if any(self._is_known(o) for o in e.outs)]
        out.sort(key=self.order.__getitem__)
        return out

    def _unstick_with_rule(self, queue):
        """A rule that consumes θ for operands nothing else constrains (a sum, a linear map)."""
        for e in self._stalled():
            solver, pat = self._find_solver(e, allow_theta=True)
            if solver is not None:
                need = sum(s.continuous_size for s in solver.theta)
                if need <= self.budget:
                    self._apply(e, solver, pat, queue)
                    return True
        return False

    def _unstick_with_block(self, queue):
        """Solve a connected set of linear relations jointly (DESIGN §3, coupled blocks)."""
        for anchor in self._stalled():
            found = self._linear_block(anchor)
            if found is None:
                continue
            anchors, interior, leaves, known = found
            rows = sum(o.size for e in anchors for o in e.outs)
            cols = sum(v.size for v in leaves)
            if rows > cols or cols - rows > self.budget:
                continue
            if rows < cols:
                block_eqns = set(anchors) | set(interior)
                outside = any(
                    e not in block_eqns for v in leaves for e in self.users.get(v, ()) if e in self.pending
                )
                # with several leaves, freeing one of them (the scheduler's next move) gives a
                # clearer θ than a rotation mixing them; a single leaf has no such alternative
                if outside or len(leaves) != 1:
                    continue
            try:
                block = LinearBlock(anchors, interior, leaves, known, None, anchors[0].describe(), self.structure)
            except PieceRankError:  # singular on a piece of a select: the select rule or a piecewise solve
                continue
            names = tuple(self._add_theta(spec, "block_null_space") for spec in block.theta)
            self.budget -= sum(spec.continuous_size for spec in block.theta)
            self.steps.append(BlockStep(block, names))
            for e in anchors:
                self._finish(e)
            for v in leaves:
                self._mark_known(v, queue)
            return True
        return False

    def _unstick_with_split(self, queue):
        """Every pending relation at once, entry by entry (a triangular system, ``rules/structural.py``)."""
        pending = sorted(self.pending, key=self.order.__getitem__)
        block = entry_split_block(pending, self._is_known, self.supports, self.table, self.names)
        if block is None or sum(spec.continuous_size for spec in block.theta) > self.budget:
            return False
        names = tuple(self._add_theta(spec, hint) for spec, hint in zip(block.theta, block.theta_hints))
        self.budget -= sum(spec.continuous_size for spec in block.theta)
        self.steps.append(BlockStep(block, names))
        for e in block.anchors:  # the other relations are evaluated forward from the leaves
            self._finish(e)
        for v in block.leaves:
            self._mark_known(v, queue)
        return True

    def _polar_part(self, e):
        """``(r, t, "cos" | "sin")`` when ``e`` is an observed ``r · cos(t)`` / ``r · sin(t)``."""
        if e.prim is not lax.mul_p or not self._is_known(e.outs[0]) or not e.outs[0].is_float:
            return None
        shape = e.outs[0].shape
        for i in (0, 1):
            trig, r = e.ins[i], e.ins[1 - i]
            d = self.definer.get(trig)
            if d is None or d.prim not in (lax.cos_p, lax.sin_p) or d not in self.pending:
                continue
            t = d.ins[0]
            if r.is_const or self._is_known(r) or self._is_known(t) or r is t or r is trig:
                continue
            if not (r.shape == t.shape == trig.shape == shape and r.is_float):
                continue
            return r, t, "cos" if d.prim is lax.cos_p else "sin"
        return None

    def _unstick_with_polar(self, queue):
        """``r·cos t`` and ``r·sin t`` both observed: radius and angle (``_polar.py``)."""
        parts = {}
        for e in self._stalled():
            found = self._polar_part(e)
            if found is not None:
                parts.setdefault((found[0], found[1]), {})[found[2]] = e
        for (r, t), pair in parts.items():
            if set(pair) != {"cos", "sin"}:
                continue
            sup = self.supports.get(r)
            nonneg = sup is constraints.positive or sup is constraints.nonnegative or (
                getattr(sup, "lower_bound", None) is not None
                and np.ndim(sup.lower_bound) == 0
                and is_concrete(sup.lower_bound)
                and float(sup.lower_bound) >= 0
            )
            block = PolarBlock(pair["cos"], pair["sin"], r, t, nonneg, pair["cos"].describe())
            hints = ("polar_period", "polar_sign")
            names = tuple(self._add_theta(spec, h) for spec, h in zip(block.theta, hints))
            self.steps.append(BlockStep(block, names))
            for e in block.anchors:
                self._finish(e)
            for v in block.leaves:
                self._mark_known(v, queue)
            return True
        return False

    def _unstick_with_poly(self, queue):
        """A relation whose unknowns trace back to one variable through a rational function."""
        for anchor in self._stalled():
            if len(anchor.outs) != 1 or not anchor.outs[0].is_float:
                continue
            found = self._poly_cone(anchor)
            if found is None:
                continue
            eqns, leaf, degree = found
            block = PolynomialBlock(anchor, eqns, leaf, degree, anchor.describe(), self.supports.get(leaf))
            names = tuple(self._add_theta(spec, "poly_root") for spec in block.theta)
            self.steps.append(PolyStep(block, names))
            self._finish(anchor)
            self._mark_known(leaf, queue)
            return True
        return False

    def _unstick_with_monotone(self, queue):
        """A relation whose unknowns trace back to one variable through a strictly monotone
        function with no closed-form inverse (``x + sin x``): solved numerically."""
        for anchor in self._stalled():
            found = self._monotone_cone(anchor)
            if found is None:
                continue
            eqns, leaf, sign = found
            block = MonotoneBlock(anchor, eqns, leaf, self.supports.get(leaf), sign, anchor.describe())
            self.steps.append(PolyStep(block, ()))
            self._finish(anchor)
            self._mark_known(leaf, queue)
            return True
        return False

    def _unstick_with_piecewise(self, queue):
        """``jnp.where(pred(x), f1(x), f0(x))`` observed: invert each piece, θ picks one."""
        for anchor in self._stalled():
            found = piecewise_cone(anchor, self.definer, self._is_known, self.pending)
            if found is None:
                continue
            eqns, leaf = found
            known = []
            for e in list(eqns) + [anchor]:
                for v in e.ins:
                    if self._is_known(v) and not v.is_const and v not in known:
                        known.append(v)
            block = PiecewiseBlock(anchor, eqns, leaf, known, self.table, anchor.describe(), self.supports.get(leaf))
            self._check_flat_pieces(block)
            names = tuple(self._add_theta(spec, "piece") for spec in block.theta)
            self.steps.append(PolyStep(block, names))
            self._finish(anchor)
            self._mark_known(leaf, queue)
            return True
        return False

    def _single_leaf_cones(self, anchor, expandable):
        """Cones between ``anchor`` and one variable, smallest first.

        Unknown operands are expanded latest-defined first (through relations
        ``expandable`` accepts); each time one variable remains, ``(cone, leaf)`` is
        yielded. Stopping at the nearest such variable (``x`` in ``b·x·(1 − x)``)
        rather than at the program's inputs keeps an iterated map a chain of small
        solves instead of one polynomial of degree 2ⁿ.
        """
        cone = [anchor]
        frontier = {v for v in anchor.ins if not self._is_known(v)}
        while frontier:
            if len(frontier) == 1:
                yield list(cone), next(iter(frontier))
            u = max(frontier, key=lambda v: self.order.get(self.definer.get(v), -1))
            d = self.definer.get(u)
            if d is None or d not in self.pending or d in cone or len(d.outs) != 1 or not expandable(d):
                return
            cone.append(d)
            frontier.discard(u)
            frontier.update(v for v in d.ins if not self._is_known(v))

    def _poly_cone(self, anchor):
        """The smallest rational cone to a single variable that ``_poly.py`` solves."""
        for cone, leaf in self._single_leaf_cones(anchor, lambda d: poly_degree(d, {}) is not None):
            degree = cone_degree(anchor, cone, leaf)
            verdict = None if degree is None else worth_solving(degree)
            if verdict is None:
                return None
            if verdict:
                return cone, leaf, degree
        return None

    def _elementwise_cones(self, anchor):
        """Single-leaf cones of elementwise analytic relations below ``anchor`` (see
        ``_single_leaf_cones``), the leaf of the anchor's shape; nothing if the anchor is not one."""
        if len(anchor.outs) != 1 or not anchor.outs[0].is_float or not is_elementwise_analytic(anchor, self.table):
            return
        shape = anchor.outs[0].shape

        def elementwise(e):
            return is_elementwise_analytic(e, self.table) and e.outs[0].shape == shape and all(
                v.shape in (shape, ()) for v in e.ins
            )

        if not elementwise(anchor):
            return
        for cone, leaf in self._single_leaf_cones(anchor, elementwise):
            if leaf.shape != shape or not leaf.is_float:
                return
            yield cone, leaf

    def _monotone_cone(self, anchor):
        """The smallest elementwise cone to a single variable that is provably strictly monotone."""
        for cone, leaf in self._elementwise_cones(anchor):
            sign = derivative_sign(sorted(cone, key=self.order.__getitem__), leaf, self.supports.get(leaf),
                                   self.supports.get, self.table)
            if sign:
                return cone, leaf, sign
        return None

    def _linear_block(self, anchor):
        """Grow a linear block from ``anchor``: (anchors, interior relations, leaves, known inputs)."""
        def linear(e):
            known = [self._is_known(v) for v in e.ins]
            return e in self.pending and is_linear(e, known, self.structure.moves_with_theta, self.table)

        if not (linear(anchor) and all(self._is_known(o) for o in anchor.outs)):
            return None
        anchors, interior, leaves = [anchor], [], []
        members = {anchor}
        frontier = [v for v in anchor.ins if not self._is_known(v)]
        grew = True
        while grew:
            grew = False
            while frontier:
                u = frontier.pop()
                if u in leaves or any(u in e.outs for e in interior):
                    continue
                d = self.definer.get(u)
                uses = [e for e in self.users.get(u, ()) if e in self.pending]
                if (
                    d is not None
                    and d not in members
                    and len(d.outs) == 1
                    and linear(d)
                    and all(e in members for e in uses)
                ):
                    interior.append(d)
                    members.add(d)
                    frontier.extend(v for v in d.ins if not self._is_known(v))
                else:
                    leaves.append(u)
            # a leaf whose every use has joined the block since is computed inside it after all
            for u in list(leaves):
                d = self.definer.get(u)
                if d is not None and d not in members and len(d.outs) == 1 and linear(d) and all(
                        e in members for e in self.users.get(u, ()) if e in self.pending):
                    leaves.remove(u)
                    frontier.append(u)
                    grew = True
            # other stalled linear relations that share a variable with the block join it
            inside = set(leaves) | {o for e in interior for o in e.outs}
            for e in self._stalled():
                if e in members or not linear(e) or not all(self._is_known(o) for o in e.outs):
                    continue
                if any(v in inside for v in e.ins):
                    anchors.append(e)
                    members.add(e)
                    frontier.extend(v for v in e.ins if not self._is_known(v))
                    grew = True
        if not leaves:
            return None
        known = []
        for e in members:
            for v in e.ins:
                if self._is_known(v) and v not in known:
                    known.append(v)
        return anchors, interior, leaves, known

    def _free_candidates(self):
        """Variables that may be freed now, best first (at most a handful)."""
        waiting = {v for e in self._stalled() for v in e.ins if not self._is_known(v)}
        keyed = []
        for v in self._candidates():
            if _is_discrete(v):
                if v not in waiting:
                    continue
            elif v.size > self.budget:
                continue
            keyed.append((self._free_key(v, waiting), v))
        keyed.sort(key=lambda kv: kv[0])
        return [v for _, v in keyed[:_MAX_CANDIDATES]]

    def _candidates(self):
        seen = set()
        for e in self.pending:
            for v in list(e.ins) + list(e.outs):
                if not v.is_const and v not in self.known and v not in seen:
                    seen.add(v)
                    yield v

    def _free_key(self, v, waiting):
        if _is_discrete(v):
            cls = 0
        elif v in self.input_set and is_constrained(self.supports.get(v)):
            cls = 1
        else:
            cls = 2
        uses = self.pending_uses.get(v, 0)
        constrained = 0 if cls == 1 else 1
        cost = max((self._solve_cost(e.prim) for e in self.users.get(v, ()) if e in self.pending), default=0)
        # Inputs before intermediates: an input left to be solved behind an intermediate freed
        # for its cost is often a constrained one, whose support check is then a hard wall in
        # θ-space that samplers hit; freed, θ carries the support.
        return (min(cls, 1), -uses, 0 if v in self.input_set else 1, -cost, constrained, v.size, v.id)

    def _solve_cost(self, prim):
        """How awkward solving through ``prim`` is: 2 with a restricted domain or a
        discrete choice, 1 for products and powers, 0 otherwise. Freeing the
        variable behind the most awkward use keeps the remaining solves total."""
        cost = self._costs.get(prim)
        if cost is None:
            cost = 1 if prim in _NONLINEAR else 0
            for r in self.table.rules_for(prim):  # function rules: cost 0
                if getattr(r, "domain", None) is not None or getattr(r, "choices", ()):
                    cost = 2
            self._costs[prim] = cost
        return cost

    def _raise_stuck(self):
        stalled = self._stalled()
        lines = []
        missing = []
        for e in stalled:
            unknown = [v for v in e.ins if not self._is_known(v)]
            lines.append(f"    {e.describe()}\n      unknown: {', '.join(map(repr, unknown))}")
            # relations with discrete outputs (comparisons) are checks, never solved backwards
            # (primitives with a linearity slot and no rule of their own are solved in linear blocks)
            linear = self.table.slot("linearity", e.prim) is not None
            if not self._rules(e) and all(o.is_float for o in e.outs) and not linear:
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
            pend = sorted(self.pending, key=self.order.__getitem__)
            lines = [f"    {e.describe()}" for e in pend[:8]]
        hint = ""
        for e in stalled:
            leaf = self._univariate_leaf(e)
            if leaf is not None:
                hint = (
                    f"\nThe first relation depends on the one unknown {leaf!r} only, but through a function "
                    "ppinv cannot show to be strictly monotone over that variable's support (interval "
                    "bounds on its derivative change sign), so it may have several preimages, which one "
                    "numeric solve would miss. If it is monotone on a smaller set, give that set as the "
                    "support (the prior's support in a model, support= in ppinv.inverse)."
                )
                break
        raise UnderdeterminedError(
            "cannot reorient the program: these relations are coupled and no single rule solves any of "
            f"them, and the remaining freedom ({self.budget} θ dimensions) does not allow freeing another "
            "variable without over-determining them:\n" + "\n".join(lines[:12]) + "\n"
            "A joint solve is needed (for example two observed linear combinations of the same "
            "variables, or a polynomial in one variable). Rewrite the program so each observation "
            "isolates a variable, or declare the inverse of this block with @ppinv.custom_inverse." + hint
        )

    def _univariate_leaf(self, anchor):
        """The single variable an elementwise-analytic relation traces back to, if any."""
        return next((leaf for _, leaf in self._elementwise_cones(anchor)), None)


def propagate_supports(eqns, table, given):
    """``given`` (variable -> support) extended forward through ``eqns`` by the table's image rules.

    A variable that no image rule reaches is absent (nothing is known of it).
    """
    sup = dict(given)
    for e in eqns:
        if len(e.outs) != 1:
            continue
        image = table.image_rule(e.prim)
        if image is None:
            continue
        try:
            s = image(e, tuple(sup.get(v) for v in e.ins))
        except Exception:
            s = None
        if s is not None:
            sup[e.outs[0]] = s
    return sup


def build_schedule(program, known_inputs, unknown_inputs, observed, supports, table, names, extra_outputs=(),
                   free=(), outer_theta=True, typical=None):
    """Schedule ``program`` given which inputs are known and which outputs are observed.

    ``extra_outputs`` are variables to compute as well (not observed): the
    carry of a loop body solved forwards, for instance. ``free`` are unknown
    inputs to make θ before the scheduler chooses any. ``outer_theta=False``
    says the known inputs and observations are fixed data (a top-level
    inverse), not values an enclosing schedule computed from θ. ``typical``
    gives input values at a typical point (or a function returning them): linear
    solves whose matrix moves with θ choose their chart there (``_block.py``).
    """
    rest = (known_inputs, unknown_inputs, observed, supports, table, names, extra_outputs, free)
    seeds = (list(known_inputs) + list(observed)) if outer_theta else []

    def schedule_of(prog):
        strict = _Scheduler(prog, *rest, outer_theta=outer_theta, typical=typical)
        try:
            return strict.run()
        except InversionError:
            if not strict.flat_refusals:
                raise
        # Every schedule found solves through a flat piece with θ-dependent values. Scheduled
        # without that restriction, the program either fails for another reason (that error
        # is the one to report) or succeeds by solving through the piece, whose other side
        # the union then covers with a schedule of its own.
        return _Scheduler(prog, *rest, flat_ok=True, outer_theta=outer_theta, typical=typical).run()

    return union_of_flat_pieces(program, schedule_of, seeds)


# --- running a schedule ---------------------------------------------------------------
def _read(env, v):
    return v.value if v.is_const else env[v]


def run_schedule(schedule, known_values, observed_values, theta):
    """Execute the plan: returns ``(x_values, log_det, ok)`` with ``x`` in input order.

    ``ok`` is False wherever a recovered ``x`` is not finite or log|det| is NaN
    (:func:`finite_guard`), whichever step produced it.
    """
    xs, log_det, ok, _ = run_schedule_extra(schedule, known_values, observed_values, theta)
    return xs, log_det, finite_guard(xs, log_det, ok, theta)


def finite_guard(xs, log_det, ok, theta=None):
    """``ok``, every ``x`` and continuous θ finite, and ``log_det`` not NaN: the one guard of a run.

    NaN propagates: a step that makes NaN from non-NaN values (a forward ``log`` of a
    negative) leaves it in some ``x`` or in log|det|, so this one check at the end finds
    every such step, and the steps need no guard that only detects NaN. An infinite
    ``x`` or θ is outside the domain too (``X`` and a real θ space hold finite values;
    an eager call refuses them as well), so a real support needs no check of its own.
    log|det| may be +∞ at a singular edge point (√ at 0), which callers treat as they
    choose.
    """
    seen = {id(x) for x in xs}  # a θ freed as an input is that x: checked once
    values = list(xs) + [t for t in (theta or {}).values() if id(t) not in seen]
    flags = [jnp.all(jnp.isfinite(v)) for v in values if jnp.issubdtype(jnp.result_type(v), jnp.inexact)]
    flags.append(~jnp.isnan(log_det))
    return jnp.logical_and(ok, jnp.all(jnp.stack(flags)))


def run_schedule_extra(schedule, known_values, observed_values, theta, on_step=None):
    """As :func:`run_schedule`, also returning the values of ``schedule.extra_outputs``.

    log|det| terms and domain flags are collected and combined once at the end
    (not folded step by step), and terms known to be zero are dropped: the
    emitted program is then little more than the inverse itself, which keeps
    XLA's compile time close to that of the forward program.

    ``on_step(what, flags, env)``, if given, is called after each step with that
    step's own domain flags and the values so far, and then for each final check
    (``what`` is ``("support", var)`` or ``("theta", name)``): an eager diagnosis
    of which relation failed (``inverse.py``). It adds nothing to the traced program.
    """
    if isinstance(schedule, UnionSchedule):  # one schedule per side of a flat piece
        return schedule.run(known_values, observed_values, theta)
    env = {}
    for v, val in zip(schedule.known_inputs, known_values):
        env[v] = val
    for v, val in zip(schedule.observed, observed_values):
        env[v] = jnp.asarray(val, v.dtype)
    terms, flags = [], []

    def add(ld, ok):
        if ld is not None and not _is_zero(ld):
            terms.append(ld)
        if ok is not None and ok is not True:
            flags.append(ok)

    for step in schedule.steps:
        n_flags = len(flags)
        if isinstance(step, ForwardStep):
            e = step.eqn
            check = step.check or (False,) * len(e.outs)
            for o, known, val in zip(e.outs, check, e.bind(*[_read(env, v) for v in e.ins])):
                if known:  # a discrete value drawn from θ: the recovered inputs must reproduce it
                    flags.append(jnp.all(val == env[o]))
                else:
                    env[o] = val
        elif isinstance(step, SolveStep):
            e = step.eqn
            ins = [_read(env, v) if k else None for v, k in zip(e.ins, step.known_in)]
            outs = [_read(env, o) if k else None for o, k in zip(e.outs, step.known_out)]
            sol = step.solver.solve(ins, outs, tuple(theta[n] for n in step.theta_names))
            for v, k, val in zip(e.ins, step.known_in, sol.ins):
                if not k and not v.is_const:
                    env[v] = _cast(val, v)
            for o, k, val in zip(e.outs, step.known_out, sol.outs):
                if not k:
                    env[o] = _cast(val, o)
            add(sol.log_det, sol.ok)
        elif isinstance(step, FreeStep):
            env[step.var] = _cast(theta[step.name], step.var)
        elif isinstance(step, PolyStep):
            b = step.block
            known_env = {v: _read(env, v) for v in b.known_inputs}
            x, ld, sol_ok = b.solve(known_env, _read(env, b.anchor.outs[0]), tuple(theta[n] for n in step.theta_names))
            env[b.leaf] = _cast(x, b.leaf)
            add(ld, sol_ok)
        elif isinstance(step, BlockStep):
            b = step.block
            known_env = {v: _read(env, v) for v in b.known_inputs}
            observed = [_read(env, o) for e in b.anchors for o in e.outs]
            vals, ld, sol_ok = b.solve(known_env, observed, tuple(theta[n] for n in step.theta_names))
            for v, val in zip(b.leaves, vals):
                env[v] = _cast(val, v)
            add(ld, sol_ok)
        if on_step is not None:
            on_step(step, flags[n_flags:], env)
    # supports narrower than the reals; finiteness is run_schedule's final guard
    xs = [env[v] for v in schedule.unknown_inputs]
    for v, x in zip(schedule.unknown_inputs, xs):
        sup = schedule.supports.get(v)
        if is_constrained(sup):
            flags.append(jnp.all(sup.check(x)))
            if on_step is not None:
                on_step(("support", v), flags[-1:], env)
    for name, spec in schedule.theta.items():  # θ outside its space is outside the domain
        if is_constrained(spec.support):
            flags.append(jnp.all(spec.support.check(theta[name])))
            if on_step is not None:
                on_step(("theta", name), flags[-1:], env)
    dtype = _float_dtype(schedule)
    log_det = sum((jnp.sum(jnp.asarray(t, dtype)) for t in terms), jnp.zeros((), dtype))
    ok = jnp.all(jnp.stack([jnp.all(f) for f in flags])) if flags else jnp.asarray(True)
    extra = [_read(env, v) for v in schedule.extra_outputs]
    return xs, log_det, ok, extra


def _is_zero(x):
    """A log|det| term that is a constant zero (structural steps, additions)."""
    if isinstance(x, (int, float)):
        return x == 0
    if not is_concrete(x):
        return False
    try:
        return bool(np.all(np.asarray(x) == 0))
    except Exception:
        return False


def schedule_pgf(schedule, program, known_values, x_values, ignored=None):
    """θ from the full inputs: evaluate forward, then read each step's parameters.

    ``ignored`` gives values for program inputs that are neither known nor
    unknown (inputs no observation depends on; any value will do).
    """
    inputs = dict(ignored or {})
    inputs.update({v: val for v, val in zip(schedule.known_inputs, known_values)})
    inputs.update({v: val for v, val in zip(schedule.unknown_inputs, x_values)})
    _, env = program.evaluate(*[inputs[v] for v in program.invars], record=True)
    return theta_from_env(schedule, env)


def theta_from_env(schedule, env):
    """θ read off the values of every variable of a forward evaluation."""
    if isinstance(schedule, UnionSchedule):
        return schedule.theta_from_env(env)
    theta = {}
    for step in schedule.steps:
        if isinstance(step, FreeStep):
            spec = schedule.theta[step.name]
            theta[step.name] = jnp.asarray(env[step.var]).astype(spec.dtype)
        elif isinstance(step, SolveStep) and step.theta_names:
            e = step.eqn
            vals = step.solver.pgf([_read(env, v) for v in e.ins], [_read(env, o) for o in e.outs])
            for n, val in zip(step.theta_names, vals):
                theta[n] = jnp.asarray(val).astype(schedule.theta[n].dtype)
        elif isinstance(step, PolyStep) and step.theta_names:
            b = step.block
            (val,) = b.pgf({v: _read(env, v) for v in b.known_inputs}, _read(env, b.leaf))
            theta[step.theta_names[0]] = jnp.asarray(val).astype(schedule.theta[step.theta_names[0]].dtype)
        elif isinstance(step, BlockStep) and step.theta_names:
            b = step.block
            vals = b.pgf({v: _read(env, v) for v in b.known_inputs}, [_read(env, v) for v in b.leaves])
            for n, val in zip(step.theta_names, vals):
                theta[n] = jnp.asarray(val).astype(schedule.theta[n].dtype)
    return {n: theta[n] for n in schedule.theta}


def _cast(val, v):
    val = jnp.asarray(val)
    if val.dtype != v.dtype:
        val = val.astype(v.dtype)
    if val.shape != v.shape:
        val = jnp.reshape(val, v.shape)
    return val


def _float_dtype(schedule):
    for v in list(schedule.unknown_inputs) + list(schedule.observed):
        if v.is_float:
            return v.dtype
    return jnp.zeros(()).dtype
