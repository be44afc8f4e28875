"""The union of schedules, one per side of a flat piece, a discrete θ choosing among them
(:func:`union_of_flat_pieces`, :class:`UnionSchedule`)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._ir import Eqn, Program
from ..errors import FlatPieceError, InversionError
from ..graph import backward_slice
from ..theta import ThetaSpec, int_dtype
from .flat import theta_dependent_flat_pieces


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
        from ..schedule import run_schedule_extra

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
        from ..schedule import theta_from_env

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
