"""Piecewise functions, and the flat pieces no inverse may drop.

**Piecewise functions.** In ``jnp.where(pred(x), f1(x), f0(x))`` the predicate
and every case are computed from the same unknown ``x``, so no single relation
can be solved. Each case ``z = f_k(x)`` is inverted on its own (a small
schedule on scalars, vmapped over elements); a discrete θ per element says
which case produced ``z`` (and, for a case with discrete choices of its own —
the sign behind an ``abs`` — which of them), and the predicate is re-evaluated
on the recovered ``x``: where it disagrees, ``(z, θ)`` is outside the domain.
A case that cannot be inverted makes the whole program fail, naming the case:
a piece is inverted or the program refused, never dropped.

**Flat pieces.** A case whose value does not depend on ``x`` (the ``0`` of
``relu``, the ``c`` of ``max(x, c)``) has a preimage of full dimension on
which the output is constant. Solving ``x`` from the output reaches only the
other pieces. That is exact when the output is fixed by the observations alone
(the flat piece then matters only for observations on a null set), but not
when the output is computed from θ: the flat piece then carries posterior mass.
Rules and blocks declare such pieces (``flat_pieces``); the scheduler avoids
solving through them with θ-dependent values (it computes ``x`` forward
instead, freeing another variable). Where that is impossible, the inverse is
the union of schedules, one per side of the flat piece, with a discrete θ
choosing among them (:func:`union_of_flat_pieces`); a program where even that
fails is refused with an error naming the piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ._compat import CALL_PRIMITIVES, is_concrete
from ._ir import V, Eqn, Program
from .errors import FlatPieceError, InversionError, UnderdeterminedError
from .graph import backward_slice
from .theta import ThetaSpec, int_dtype

__all__ = [
    "PiecewiseBlock",
    "piecewise_cone",
    "is_elementwise",
    "FlatPiece",
    "FlatPieceError",
    "theta_dependent",
    "union_of_flat_pieces",
    "UnionSchedule",
]

# Primitives that act element by element (scalar operands broadcast). Shape-preserving is not
# enough: ``cumsum`` and ``rev`` keep the shape but mix elements, which a per-element solve
# cannot invert.
_ELEMENTWISE_NAMES = (
    "abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type copy cos cosh "
    "digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt integer_pow is_finite le lgamma log log1p "
    "log2 logistic lt max min mul ne neg nextafter not or pow reduce_precision rem round rsqrt select_n "
    "sign sin sinh sqrt square sub tan tanh xor"
).split()
_ELEMENTWISE = frozenset(p for p in (getattr(lax, n + "_p", None) for n in _ELEMENTWISE_NAMES) if p is not None)


def _is_elementwise_prim(e) -> bool:
    if e.prim in _ELEMENTWISE:
        return True
    body_param = CALL_PRIMITIVES.get(e.prim)
    if body_param is None:
        return False
    from ._ir import _body_of

    body, _ = _body_of(e.params[body_param])  # a kept call (``logaddexp``): elementwise if its body is
    return all(_jaxpr_eqn_elementwise(q) for q in body.eqns)


def _jaxpr_eqn_elementwise(q) -> bool:
    if q.primitive in _ELEMENTWISE:
        return True
    body_param = CALL_PRIMITIVES.get(q.primitive)
    if body_param is None:
        return False
    from ._ir import _body_of

    body, _ = _body_of(q.params[body_param])
    return all(_jaxpr_eqn_elementwise(r) for r in body.eqns)


def is_elementwise(e, shape) -> bool:
    """Whether relation ``e`` acts element by element on arrays of ``shape``."""
    return (
        len(e.outs) == 1
        and all(o.shape == shape for o in e.outs)
        and all(v.shape in (shape, ()) for v in e.ins)
        and _is_elementwise_prim(e)
    )


def piecewise_cone(anchor, definer, is_known, pending):
    """``(eqns, leaf)`` when every unknown input of the ``select_n`` anchor traces back to one
    variable through elementwise relations; else ``None``.

    The predicate is computed from that variable, or known (``jnp.where(mask, f(x), x)`` with
    a constant or known ``mask``: it picks the case of each element, so no θ chooses it). A
    known predicate that may select a case not computed from the variable (a constant or known
    case) is declined: the output there does not depend on the variable, which that element of
    the observation would leave undetermined.
    """
    lifted = anchor.prim is not lax.select_n_p
    if lifted and (len(anchor.outs) != 1 or not anchor.outs[0].is_float or not is_elementwise(anchor, anchor.outs[0].shape)):
        return None
    if not lifted and is_known(anchor.ins[0]) and not _never_picks_a_known_case(anchor, is_known):
        return None
    shape = anchor.outs[0].shape
    cone, leaves = [], set()
    frontier = [v for v in anchor.ins if not is_known(v)]
    while frontier:
        u = frontier.pop()
        d = definer.get(u)
        if d is not None and d in pending and d not in cone and is_elementwise(d, shape):
            cone.append(d)
            frontier.extend(v for v in d.ins if not is_known(v))
        elif d is None or d not in cone:
            leaves.add(u)
            if len(leaves) > 1:
                return None  # one variable or none: a long sum of unknowns stops here
    if len(leaves) != 1:
        return None
    (leaf,) = leaves
    if leaf.shape != shape or not leaf.is_float:
        return None
    if lifted and len(_inner_selects(cone, is_known)) != 1:
        return None  # no where inside (another strategy's), or several (their products of pieces: not lifted)
    return cone, leaf


def _inner_selects(cone, is_known):
    return [e for e in cone if e.prim is lax.select_n_p and not is_known(e.ins[0])]


def lift_select(anchor, eqns, is_known):
    """``G(x, where(p(x), c₀(x), c₁(x)))`` observed, as ``where(p(x), G(x, c₀(x)), G(x, c₁(x)))``
    (elementwise, the same function): the relations below the where copied once per case, and
    a ``select_n`` of the copies whose output is the anchor's. Returns the new anchor and the
    relations (the copies added)."""
    (inner,) = _inner_selects(eqns, is_known)
    above = {inner.outs[0]}
    downstream = []
    for e in sorted(list(eqns) + [anchor], key=lambda q: q.id):
        if e is not inner and any(v in above for v in e.ins):
            downstream.append(e)
            above.update(e.outs)
    cases = []
    copies = []
    for case in inner.ins[1:]:
        rename = {inner.outs[0]: case}
        for e in downstream:
            outs = [V(o.shape, o.dtype) for o in e.outs]
            # fresh ids, in order: within the block the copies follow what they read
            copy = Eqn(e.prim, e.params, [rename.get(v, v) for v in e.ins], outs, e.source)
            rename.update(zip(e.outs, outs))
            copies.append(copy)
        cases.append(rename[anchor.outs[0]])
    new_anchor = Eqn(lax.select_n_p, {}, [inner.ins[0], *cases], list(anchor.outs), anchor.source)
    return new_anchor, [e for e in eqns if e not in downstream] + copies


def _never_picks_a_known_case(anchor, is_known):
    """A known predicate: whether it is sure to select, everywhere, a case that is not known."""
    pred, cases = anchor.ins[0], anchor.ins[1:]
    known_cases = [k for k, c in enumerate(cases) if is_known(c)]
    if not known_cases:
        return True
    if not (pred.is_const and is_concrete(pred.value)):
        return False  # known only at run time: which case it selects is not known now
    picks = np.asarray(pred.value).astype(np.int64)
    return not np.any(np.isin(picks, known_cases))


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
    from .schedule import BlockStep, ForwardStep, FreeStep, PolyStep, SolveStep

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
    from .schedule import PolyStep, SolveStep

    if isinstance(step, SolveStep):
        return getattr(step.solver, "flat_pieces", ())
    if isinstance(step, PolyStep):
        return getattr(step.block, "flat_pieces", ())
    return ()


def theta_dependent_flat_pieces(steps, theta, seeds=()):
    """The flat pieces of ``steps`` solved through with θ-dependent values, in step order."""
    dep = theta_dependent(steps, theta, seeds)
    return [p for s in steps for p in _step_flat_pieces(s) if any(v in dep for v in p.consumed)]


_MAX_PIECES = 8  # schedules in one union


def union_of_flat_pieces(program, schedule_of, seeds=()):
    """The inverse of ``program`` with no flat piece dropped.

    ``schedule_of(program)`` schedules a program (it may solve through flat
    pieces). When the schedule solves through a flat piece with θ-dependent
    values, the piece holds posterior mass: the program is scheduled again with
    that relation replaced by its flat form (output = the piece's value, the
    operand then free), and the result is the union of the schedules, a
    discrete θ choosing among them (:class:`UnionSchedule`). Each schedule
    checks, on its recovered inputs, that they lie on its pieces, so the pieces
    partition the preimage. Refused, naming the piece, when a piece cannot be
    scheduled, is not scalar, or the schedules' continuous θ differ.
    """
    cache = {}

    def build(prog):
        if id(prog) not in cache:
            cache[id(prog)] = (prog, schedule_of(prog))
        return cache[id(prog)][1]

    pieces = _expand(program, build, seeds, ())
    if len(pieces) == 1:
        return pieces[0][0]
    return UnionSchedule(program, pieces)


def _expand(prog, build, seeds, assignment):
    """``[(schedule, assignment)]``: the schedules covering the preimage within ``assignment``
    (a tuple of ``(flat piece, on the piece?)``)."""
    try:
        schedule = build(prog)
    except InversionError as err:
        if not assignment:
            raise
        piece = assignment[-1][0]
        raise FlatPieceError(piece.refusal(f"; scheduled on that piece, the program fails: {err}")) from None
    decided = {p.key for p, _ in assignment}
    new = [p for p in theta_dependent_flat_pieces(schedule.steps, schedule.theta, seeds) if p.key not in decided]
    if not new:
        return [(schedule, assignment)]
    piece = new[0]
    z = piece.relation.outs[0]
    if piece.inside is None or piece.operand.size != 1 or z.size != 1 or piece.value.shape != z.shape:
        raise FlatPieceError(piece.refusal(" (ppinv takes the union of the schedules on both sides of a flat piece "
                                           "for scalars only)"))
    if 2 ** (len(assignment) + 1) > _MAX_PIECES:
        raise FlatPieceError(piece.refusal(f" (more than {_MAX_PIECES} combinations of flat pieces)"))
    off = _expand(prog, build, seeds, assignment + ((piece, False),))
    on = _expand(_flat_variant(prog, piece), build, seeds, assignment + ((piece, True),))
    return off + on


def _flat_variant(prog, piece):
    """``prog`` with ``piece``'s relation replaced by what holds on the piece: output = value."""
    e = piece.relation
    flat = Eqn(lax.copy_p, {}, [piece.value], list(e.outs), e.source)
    flat.id = e.id  # ids order relations: keep the position
    return Program(prog.invars, prog.outvars, [flat if q is e else q for q in prog.eqns])


class UnionSchedule:
    """Several schedules of one program, each covering the preimage on some pieces; the θ leaf
    ``flat_piece`` picks one. Continuous θ is shared (same shapes and supports in every
    schedule), each schedule's discrete θ is its own and held at 0 while another one runs, so
    log|det| stays the Jacobian of the chosen schedule and the pieces' densities add up."""

    PIECE = "flat_piece"

    def __init__(self, program, pieces):
        self.program = program
        self.schedules = [s for s, _ in pieces]
        self.assignments = [a for _, a in pieces]
        first = self.schedules[0]
        self.known_inputs, self.unknown_inputs = first.known_inputs, first.unknown_inputs
        self.observed, self.extra_outputs = first.observed, first.extra_outputs
        self.supports = first.supports
        self.names, self.own_discrete, self.theta = _merge_theta(self.schedules, self.assignments)
        origin = "; ".join(p.relation.describe() for p, _ in self.assignments[-1])
        self.theta[self.PIECE] = ThetaSpec(
            (), np.dtype(int_dtype()), constraints.integer_interval(0, len(pieces) - 1), "piece", origin
        )
        self.steps = []  # the steps are the schedules'
        self._slice = _slice_for(program, {v for a in self.assignments for p, _ in a for v in p.reads})

    @property
    def n_theta(self) -> int:
        return sum(s.continuous_size for s in self.theta.values())

    def describe(self) -> str:
        out = []
        for k, (s, a) in enumerate(zip(self.schedules, self.assignments)):
            where = ", ".join(f"{'on' if on else 'off'} the flat piece {p.region} of {p.relation.name}" for p, on in a)
            out.append(f"θ[{self.PIECE!r}] = {k}: {where}\n{s.describe()}")
        return "\n".join(out)

    def _holds(self, k, read):
        ok = jnp.asarray(True)
        for p, on in self.assignments[k]:
            inside = jnp.all(p.inside(read))
            ok = ok & (inside if on else ~inside)
        return ok

    def _read_after(self, known_values, xs):
        env = dict(zip(self.known_inputs, known_values))
        env.update(zip(self.unknown_inputs, xs))
        for e in self._slice:
            for o, val in zip(e.outs, e.bind(*[v.value if v.is_const else env[v] for v in e.ins])):
                env[o] = val
        return lambda v: v.value if v.is_const else env[v]

    def run(self, known_values, observed_values, theta):
        from .schedule import run_schedule_extra

        k = theta[self.PIECE]
        out = None
        for i, sched in enumerate(self.schedules):
            local = {n: theta[u] for n, u in self.names[i].items()}
            xs, ld, ok, extra = run_schedule_extra(sched, known_values, observed_values, local)
            ok = ok & self._holds(i, self._read_after(known_values, xs))
            for j, names in enumerate(self.own_discrete):  # another schedule's choices are held at 0
                for n in names if j != i else ():
                    ok = ok & jnp.all(theta[n] == 0)
            if out is None:
                out = (list(xs), ld, ok, list(extra))
                continue
            pick = k == i
            out = (
                [jnp.where(pick, a, b) for a, b in zip(xs, out[0])],
                jnp.where(pick, ld, out[1]),
                jnp.where(pick, ok, out[2]),
                [jnp.where(pick, a, b) for a, b in zip(extra, out[3])],
            )
        xs, ld, ok, extra = out
        return xs, jnp.where(ok, ld, 0.0), ok & (k >= 0) & (k < len(self.schedules)), extra

    def theta_from_env(self, env):
        from .schedule import theta_from_env

        def read(v):
            return v.value if v.is_const else env[v]

        k = jnp.zeros((), int_dtype())
        for i in range(len(self.schedules)):
            k = jnp.where(self._holds(i, read), i, k)
        theta = {self.PIECE: k}
        for i, sched in enumerate(self.schedules):
            local = theta_from_env(sched, env)
            for n, u in self.names[i].items():
                spec = self.theta[u]
                val = jnp.asarray(local[n]).astype(spec.dtype)
                theta[u] = val if u not in theta else jnp.where(k == i, val, theta[u])
        for i, names in enumerate(self.own_discrete):
            for n in names:
                theta[n] = jnp.where(k == i, theta[n], jnp.zeros_like(theta[n]))
        return {n: theta[n] for n in self.theta}


def _merge_theta(schedules, assignments):
    """Shared names for the schedules' θ: ``(names, own_discrete, theta)`` with ``names[i]``
    mapping schedule ``i``'s leaves to the union's, ``own_discrete[i]`` the union names of its
    discrete leaves."""

    def signature(spec):
        return (tuple(spec.shape), np.dtype(spec.dtype).str, repr(spec.support))

    first = [(n, s) for n, s in schedules[0].theta.items() if not s.discrete]
    shared = [[n] for n, _ in first]  # local names of each shared continuous leaf, per schedule
    for i, sched in enumerate(schedules[1:], start=1):
        free = list(range(len(first)))
        for n, spec in ((n, s) for n, s in sched.theta.items() if not s.discrete):
            match = next((j for j in free if signature(first[j][1]) == signature(spec)), None)
            if match is None:
                piece = assignments[i][-1][0]
                raise FlatPieceError(piece.refusal(
                    f" (on that piece the inverse needs the continuous parameter {n!r}, {spec.describe()}, which no "
                    "parameter of the other pieces matches; a union of schedules needs the same continuous θ)"
                ))
            free.remove(match)
            shared[match].append(n)
        if free:
            piece = assignments[i][-1][0]
            raise FlatPieceError(piece.refusal(" (the pieces need different numbers of continuous parameters)"))
    theta, names = {}, [dict() for _ in schedules]
    for j, (n0, spec) in enumerate(first):
        local = shared[j]
        union = n0 if all(n == n0 for n in local) else "_or_".join(dict.fromkeys(local))
        theta[union] = spec
        for i, n in enumerate(local):
            names[i][n] = union
    own = []
    for i, sched in enumerate(schedules):
        mine = []
        for n, spec in sched.theta.items():
            if spec.discrete:
                union = n if n not in theta else f"{n}_piece{i}"
                theta[union] = spec
                names[i][n] = union
                mine.append(union)
        own.append(mine)
    return names, own, theta


def _slice_for(program, targets):
    """The relations of ``program`` (in order) that compute ``targets`` from its inputs."""
    return backward_slice(program.eqns, targets)[0]


# --- piecewise functions ------------------------------------------------------------------
def _sub_program(eqns, leaf, out, known, assume=None):
    """The relations computing ``out`` from ``leaf``, as a program on *scalars*.

    The cone is elementwise, so one element's worth of it is solved and the
    schedule is vmapped over elements; that keeps a log|det| and a domain flag
    per element, which the choice of piece needs. Returns the program and the
    outer values feeding its extra inputs (known variables and array constants).
    ``assume`` fixes variables to constants: inside piece ``k`` the predicate is
    ``k``, which also resolves the inner ``where`` of the double-where idiom
    (``jnp.where(x > 0, x, expm1(jnp.where(x > 0, 0, x)))``).
    """
    assume = assume or {}
    needed, keep = {out}, []
    for e in sorted(eqns, key=lambda e: e.id, reverse=True):
        if any(o in needed for o in e.outs) and not any(o in assume for o in e.outs):
            keep.append(e)
            needed.update(v for v in e.ins if not v.is_const)
    keep.reverse()
    scalar = {}
    feeds = []  # outer variables (known or array constants) passed in per element

    def s(v):
        if v in scalar:
            return scalar[v]
        if v in assume:
            new = V((), v.dtype, value=np.asarray(assume[v], v.dtype))
        elif v.is_const and np.size(v.value) == 1:
            new = V((), v.dtype, value=np.asarray(v.value).reshape(()))
        else:
            new = V((), v.dtype)
            if v is not leaf and (v.is_const or v in known):
                feeds.append(v)
        scalar[v] = new
        return new

    s(leaf)
    new_eqns = [Eqn(e.prim, e.params, [s(v) for v in e.ins], [s(o) for o in e.outs], e.source) for e in keep]
    s(out)  # a known predicate is computed by none of the relations: it is read as it is
    inputs = [scalar[leaf]] + [scalar[v] for v in feeds]
    return Program(inputs, [scalar[out]], new_eqns), feeds


#: a comparison ``x op c`` with ``x`` on the right reads as ``c op' x``
_FLIPPED = {lax.lt_p: lax.gt_p, lax.le_p: lax.ge_p, lax.gt_p: lax.lt_p, lax.ge_p: lax.le_p}
_EMPTY = object()  # the predicate selects the case nowhere in the support


_AFFINE_STEPS = (lax.neg_p, lax.add_p, lax.sub_p, lax.mul_p, lax.div_p, lax.convert_element_type_p)


def _affine_chain(prog, u, x):
    """The relations of ``prog`` computing ``u`` from ``x`` when each is affine in its one
    variable operand with scalar constants (``−x``, ``a·x``, ``x − b``, ``x / a``); else ``None``."""
    definer = {o: e for e in prog.eqns for o in e.outs}
    chain = []
    while u is not x:
        e = definer.get(u)
        if e is None or e.prim not in _AFFINE_STEPS or not u.is_float:
            return None
        var = [i for i, v in enumerate(e.ins) if not v.is_const]
        if len(var) != 1 or any(np.size(v.value) != 1 for v in e.ins if v.is_const):
            return None
        if e.prim is lax.div_p and var != [0]:
            return None  # c / x is not affine
        chain.append(e)
        u = e.ins[var[0]]
    return chain[::-1]


def _run_chain(chain, x, t):
    env = {x: np.asarray(t, x.dtype)}
    with jax.ensure_compile_time_eval():
        for e in chain:
            (env[e.outs[0]],) = e.bind(*[v.value if v.is_const else env[v] for v in e.ins])
    return float(np.asarray(env[chain[-1].outs[0]] if chain else env[x]))


def _comparison_interval(prog, k):
    """``(lo, hi, lo_closed, hi_closed)`` holding the leaf wherever the scalar predicate program
    ``prog`` (of the leaf ``prog.invars[0]``) equals ``k``, when it compares an affine function of
    the leaf with a constant; else ``None``. A threshold carried back through an affine map is
    rounded, so the interval is widened by a few ulps (the predicate is re-checked on the
    recovered value; the interval only has to hold the piece)."""
    x, out = prog.invars[0], prog.outvars[0]
    cmp = next((e for e in prog.eqns if e.prim in _FLIPPED), None)
    if cmp is None or k not in (0, 1):
        return None
    tail = [e for e in prog.eqns if e is not cmp and e.outs[0] is out]
    if cmp.outs[0] is not out and not (len(tail) == 1 and tail[0].prim is lax.convert_element_type_p
                                       and tail[0].ins[0] is cmp.outs[0]):
        return None  # the comparison is not the predicate (a bool used as an index is)
    a, b = cmp.ins
    if not a.is_const and b.is_const:
        op, u, c = cmp.prim, a, b.value
    elif a.is_const and not b.is_const:
        op, u, c = _FLIPPED[cmp.prim], b, a.value
    else:
        return None
    chain = _affine_chain(prog, u, x)
    if chain is None or np.size(c) != 1 or len(chain) + 1 + len(tail) != len(prog.eqns):
        return None
    c = float(np.asarray(c).reshape(()))
    slope = _run_chain(chain, x, 1.0) - _run_chain(chain, x, 0.0)
    if not np.isfinite(slope) or slope == 0 or not np.isfinite(c):
        return None
    t = c if not chain else (c - _run_chain(chain, x, 0.0)) / slope
    if slope < 0:
        op = _FLIPPED[op]
    widen = 0.0 if not chain else 16 * np.finfo(np.float64).eps * max(abs(t), 1.0)
    inf = np.inf
    below_open, below_closed = (-inf, t + widen, False, widen > 0), (-inf, t + widen, False, True)
    above_open, above_closed = (t - widen, inf, widen > 0, False), (t - widen, inf, True, False)
    true_false = {lax.lt_p: (below_open, above_closed), lax.le_p: (below_closed, above_open),
                  lax.gt_p: (above_open, below_closed), lax.ge_p: (above_closed, below_open)}[op]
    return true_false[0] if k == 1 else true_false[1]


def piece_support(pred_prog, k, support):
    """The support of the leaf on case ``k`` of a piecewise function: ``support`` narrowed to
    where the predicate selects ``k`` (:func:`_comparison_interval`); ``support`` itself when
    the predicate says nothing of the kind; ``_EMPTY`` when the two do not meet."""
    from .theta import support_bounds, support_from_bounds

    while isinstance(support, constraints.independent):  # the case's program is on scalars
        support = support.base_constraint
    outer = support_bounds(support)
    if outer is None:
        return None  # not an interval element by element (a simplex): nothing to say of one element
    piece = _comparison_interval(pred_prog, k)
    if piece is None:
        return support
    lo, lo_closed = max((piece[0], piece[2]), (outer[0], outer[2]), key=lambda b: (b[0], not b[1]))
    hi, hi_closed = min((piece[1], piece[3]), (outer[1], outer[3]), key=lambda b: (b[0], b[1]))
    if lo > hi or (lo == hi and not (lo_closed and hi_closed)):
        return _EMPTY
    narrowed = support_from_bounds(lo, hi, lo_closed, hi_closed)
    return support if narrowed is None else narrowed


class _Piece:
    """One invertible case of a piecewise function: its scalar schedule, and the codes of the
    block's θ that select it (one per combination of the case's own discrete choices)."""

    def __init__(self, case, prog, feed_index, sub, offset):
        self.case = case
        self.prog = prog
        self.feed_index = feed_index  # positions of this case's feeds in the block's feed list
        self.sub = sub
        self.offset = offset
        self.leaves = list(sub.theta.items()) if sub is not None else []
        self.radix = [int(s.support.upper_bound) - int(s.support.lower_bound) + 1 for _, s in self.leaves]
        self.width = int(np.prod(self.radix, dtype=np.int64)) if self.radix else 1

    def selects(self, code):
        return (code >= self.offset) & (code < self.offset + self.width)

    def _decode(self, code):
        """The case's own θ (name -> scalar) from a code in ``[offset, offset + width)``."""
        rest = jnp.clip(code - self.offset, 0, self.width - 1)
        theta = {}
        for (name, spec), m in zip(self.leaves, self.radix):
            theta[name] = (int(spec.support.lower_bound) + rest % m).astype(spec.dtype)
            rest = rest // m
        return theta

    def _encode(self, theta):
        code, scale = jnp.zeros((), int_dtype()), 1
        for (name, spec), m in zip(self.leaves, self.radix):
            code = code + scale * (jnp.asarray(theta[name]).astype(int_dtype()) - int(spec.support.lower_bound))
            scale *= m
        return self.offset + code

    def invert(self, z, code, feeds):
        """``(x, log|det|, ok)`` for one element."""
        if self.sub is None:  # the identity case
            return z, jnp.zeros_like(z), jnp.asarray(True)
        from .schedule import run_schedule

        xs, ld, ok = run_schedule(self.sub, [feeds[i] for i in self.feed_index], [z], self._decode(code))
        return xs[0], ld, ok

    def code_of(self, x, feeds):
        """The code that reproduces ``x`` through this case (for one element)."""
        if not self.leaves:
            return jnp.asarray(self.offset, int_dtype())
        from .schedule import theta_from_env

        _, env = self.prog.evaluate(x, *[feeds[i] for i in self.feed_index], record=True)
        return self._encode(theta_from_env(self.sub, env))


#: primitives whose float output is locally constant in their inputs (zero derivative almost everywhere)
_STEP_PRIMITIVES = frozenset(p for p in (getattr(lax, n + "_p", None) for n in ("sign", "floor", "ceil", "round"))
                             if p is not None)


def _locally_constant_in(eqns, leaf, c):
    """True when ``c`` depends on ``leaf`` only through steps (``sign``, ``floor``, comparisons,
    integer casts): constant on each interval between them, so a case of a where computing it is
    flat there — its preimages have full dimension, and it is declared a flat piece, never solved."""
    moving = {leaf}
    for e in sorted(eqns, key=lambda q: q.id):
        if e.prim in _STEP_PRIMITIVES or not any(v in moving for v in e.ins):
            continue
        moving.update(o for o in e.outs if o.is_float)  # integer and boolean values are steps too
    return c not in moving and c in {o for e in eqns for o in e.outs}


def _case_label(k, c):
    return f"case {k} ({c!r})"


class PiecewiseBlock:
    """``z = select_n(pred(x), f₀(x), f₁(x), …)`` solved for ``x`` (see the module notes).

    ``support`` is the leaf's own support. Each case is scheduled on the set where the
    predicate selects it, intersected with that support, when the predicate is a comparison
    of the leaf with a constant (:func:`piece_support`): a case invertible there only
    (``x + exp(−x)`` for ``x ≥ 18``, monotone on the piece though not on the line) is then
    solved there, and nested wheres narrow the interval further.
    """

    def __init__(self, anchor, eqns, leaf, known, table, origin, support=None):
        from .schedule import build_schedule

        if anchor.prim is not lax.select_n_p:  # the where is inside: lift it to the observation
            known_set = set(known)
            anchor, eqns = lift_select(anchor, eqns, lambda v: v.is_const or v in known_set)
        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self.leaf = leaf
        self.known_inputs = list(known)
        pred, cases = anchor.ins[0], anchor.ins[1:]
        # a known predicate picks each element's case itself (see ``piecewise_cone``)
        self.fixed_choice = pred.is_const or pred in known
        picked = np.unique(np.asarray(pred.value).astype(np.int64)) if pred.is_const and is_concrete(pred.value) \
            else None
        self.feeds = []
        self.pred_prog, self.pred_feeds = self._scalar(pred, known)
        self.out_prog, self.out_feeds = self._scalar(anchor.outs[0], known, extra=[anchor])
        self.pieces, self.flat_pieces = [], []
        offset = 0
        for k, c in enumerate(cases):
            if picked is not None and k not in picked:
                continue  # a constant predicate that never selects this case
            if c is leaf:
                self.pieces.append(_Piece(k, None, [], None, offset))
                offset += 1
                continue
            flat = c.is_const or c in known  # a flat piece: never the one that produced z (see the module notes)
            if flat or _locally_constant_in(self.eqns, leaf, c):  # flat on each sub-piece (``sign(x)``) too
                self.flat_pieces.append(FlatPiece(
                    anchor, leaf, c, (anchor.outs[0], c) if flat else (anchor.outs[0], *self.known_inputs),
                    f"the predicate of the where selects case {k}",
                    inside=lambda read, k=k: read(pred).astype(int_dtype()) == k, reads=(pred,),
                ))
                continue
            on_piece = piece_support(self.pred_prog, k, support)
            if on_piece is _EMPTY:
                continue  # the predicate never selects this case inside the support
            prog, feed_index = self._scalar(c, known, assume={pred: k})
            supports = {} if on_piece is None else {prog.invars[0]: on_piece}
            try:
                # the case's observation and known inputs are the block's: whether they are computed
                # from θ is for the enclosing schedule to judge (``_inherit_flat_pieces``)
                sub = build_schedule(prog, prog.invars[1:], prog.invars[:1], prog.outvars, supports, table, {},
                                     outer_theta=False)
            except InversionError as err:
                raise type(err)(
                    f"{_case_label(k, c)} of the piecewise function at {anchor.source} cannot be inverted for "
                    f"{leaf!r}, so the program cannot be inverted on that piece: {err}"
                ) from None
            self._check_own_theta(sub, k, c)
            self._inherit_flat_pieces(sub, prog, k, c)
            piece = _Piece(k, prog, feed_index, sub, offset)
            self.pieces.append(piece)
            offset += piece.width
        if not self.pieces:
            raise UnderdeterminedError(
                f"every case of the piecewise function at {anchor.source} is constant in {leaf!r}, so its "
                "output does not determine it."
            )
        self.n_codes = offset
        self.theta = ()
        # θ codes the piece and its own choices; with a known predicate only the own choices
        n_choices = max(p.width for p in self.pieces) if self.fixed_choice else offset
        if n_choices > 1:
            support = constraints.integer_interval(0, n_choices - 1)
            self.theta = (ThetaSpec(leaf.shape, np.dtype(int_dtype()), support, "piece", origin),)
        n = len(cases)
        self.description = (
            f"piecewise: invert each of {n} pieces, " + ("the known predicate picks the piece" if self.fixed_choice
                                                         else "θ picks the piece, predicate re-checked")
        )

    def _scalar(self, out, known, assume=None, extra=()):
        """The scalar program of ``out`` and the positions of its feeds in ``self.feeds``."""
        prog, feeds = _sub_program(self.eqns + list(extra), self.leaf, out, known, assume)
        index = []
        for v in feeds:
            if v not in self.feeds:
                self.feeds.append(v)
            index.append(self.feeds.index(v))
        return prog, index

    def _inherit_flat_pieces(self, sub, prog, k, c):
        """Flat pieces the case's schedule solves through with values read from its observation
        or known inputs (a nested ``where`` with a constant case): the block declares them as its
        own, reading the block's observation and known inputs, so the enclosing schedule refuses
        the block (or schedules around it) where those are computed from θ."""
        seeds = list(prog.invars[1:]) + list(prog.outvars)
        for p in theta_dependent_flat_pieces(getattr(sub, "steps", ()), sub.theta, seeds):
            where = f"{p.region} (in {_case_label(k, c)} of the piecewise function at {self.anchor.source})"
            self.flat_pieces.append(FlatPiece(p.relation, p.operand, p.value,
                                              (self.anchor.outs[0], *self.known_inputs), where))

    def _check_own_theta(self, sub, k, c):
        where = f"{_case_label(k, c)} of the piecewise function at {self.anchor.source}"
        for name, spec in sub.theta.items():
            if not spec.discrete:
                raise InversionError(
                    f"{where} is not one-to-one in {self.leaf!r}: inverting it needs the continuous parameter "
                    f"{name!r}, so its preimages form a continuum this piecewise solve cannot represent."
                )
            if not isinstance(spec.support, constraints.integer_interval) or spec.shape != ():
                raise InversionError(
                    f"{where} needs the unbounded discrete choice {name!r} ({spec.describe()}); a piece of a "
                    "piecewise function may only have finitely many preimages per element. Restrict the "
                    "piece (e.g. through the support of its input) or declare the inverse with "
                    "@ppinv.custom_inverse."
                )

    def _predicate(self, x, feeds):
        prog = self.pred_prog
        return prog.evaluate(x, *[feeds[i] for i in self.pred_feeds])[0]

    def _per_element(self, fn, known_env, *arrays):
        feeds = [v.value if v.is_const else known_env[v] for v in self.feeds]
        return _per_element(fn, list(arrays), feeds)

    def _code(self, ci, zi, feeds):
        """The block's code of an element from its θ: θ itself, or, where the known predicate
        picks the piece, that piece's offset plus θ (its own choices; ``ok`` if in range)."""
        if not self.fixed_choice:
            return ci, jnp.asarray(True)
        case = self._predicate(zi, feeds).astype(int_dtype())
        offset, width = jnp.asarray(-1, int_dtype()), jnp.asarray(0, int_dtype())
        for piece in self.pieces:
            offset = jnp.where(case == piece.case, piece.offset, offset)
            width = jnp.where(case == piece.case, piece.width, width)
        return offset + ci, (width > 0) & (ci >= 0) & (ci < width)

    def solve(self, known_env, z, theta):
        code = theta[0] if self.theta else jnp.zeros(jnp.shape(z), int_dtype())

        def one(zi, ci, *feeds):
            ci, in_range = self._code(ci, zi, feeds)
            x, ld, ok, case = jnp.zeros_like(zi), jnp.zeros_like(zi), in_range, jnp.asarray(-1)
            for piece in self.pieces:
                xk, ldk, okk = piece.invert(zi, ci, feeds)
                pick = piece.selects(ci)
                x = jnp.where(pick, xk, x)
                ld = jnp.where(pick, ldk, ld)
                ok = jnp.where(pick, okk & in_range, ok)
                case = jnp.where(pick, piece.case, case)
            # the recovered x must lie on the piece that was inverted
            ok = ok & (self._predicate(x, feeds).astype(case.dtype) == case)
            return x, jnp.where(ok, ld, 0.0), ok

        x, ld, ok = self._per_element(one, known_env, z, code)
        return x, jnp.sum(ld), jnp.all(ok)

    def pgf(self, known_env, x):
        if not self.theta:
            return ()

        def one(xi, *feeds):
            # The piece the predicate picks, unless its inverse misses: at a boundary between
            # pieces (ndtr at −1) the recovered x can round to the other side, and the
            # neighbouring piece, which takes the same value there, is the one that inverts.
            case = self._predicate(xi, feeds).astype(int_dtype())
            z = self.out_prog.evaluate(xi, *[feeds[i] for i in self.out_feeds])[0]
            tries = []
            for piece in self.pieces:
                code = piece.code_of(xi, feeds)
                xk, _, okk = piece.invert(z, code, feeds)
                okk = okk & (self._predicate(xk, feeds).astype(int_dtype()) == piece.case)
                tries.append((case == piece.case, okk, code))
            # first the predicate's piece if it inverts, then any piece that does, then the predicate's
            ranked = [p & ok for p, ok, _ in tries] + [ok for _, ok, _ in tries] + [p for p, _, _ in tries]
            if self.fixed_choice:  # the predicate's piece; θ holds its own choices
                ranked = [p for p, _, _ in tries]
            chosen, done = jnp.zeros((), int_dtype()), jnp.asarray(False)
            for take, code in zip(ranked, [code for _, _, code in tries] * 3):
                chosen = jnp.where(~done & take, code, chosen)
                done = done | take
            if self.fixed_choice:
                offset = jnp.zeros((), int_dtype())
                for piece in self.pieces:
                    offset = jnp.where(case == piece.case, piece.offset, offset)
                chosen = chosen - offset
            return chosen

        return (self._per_element(one, known_env, x),)


def _per_element(fn, arrays, feeds):
    """Apply a scalar function to every element of ``arrays`` (all of one shape), with matching
    elements of ``feeds`` (arrays of that shape, or scalars)."""
    shape = jnp.shape(arrays[0])
    if not shape:
        return fn(*arrays, *feeds)
    flat_arrays = [jnp.reshape(a, -1) for a in arrays]
    flat_feeds = [jnp.reshape(f, -1) if jnp.ndim(f) else f for f in feeds]
    axes = [0] * len(arrays) + [0 if jnp.ndim(f) else None for f in feeds]
    out = jax.vmap(fn, in_axes=axes)(*flat_arrays, *flat_feeds)
    return jax.tree_util.tree_map(lambda o: jnp.reshape(o, shape), out)
