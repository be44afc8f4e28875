"""``z = select_n(pred(x), f₀(x), f₁(x), …)`` solved for ``x`` (:class:`PiecewiseBlock`): each case
inverted on scalars and vmapped over elements, a discrete θ per element naming the case."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._compat import is_concrete
from .._ir import V, Eqn, Program
from ..errors import InversionError, UnderdeterminedError
from ..theta import ThetaSpec, int_dtype
from .cone import lift_select
from .flat import FlatPiece, theta_dependent_flat_pieces
from .supports import _EMPTY, piece_support


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
        from ..schedule import run_schedule

        xs, ld, ok = run_schedule(self.sub, [feeds[i] for i in self.feed_index], [z], self._decode(code))
        return xs[0], ld, ok

    def code_of(self, x, feeds):
        """The code that reproduces ``x`` through this case (for one element)."""
        if not self.leaves:
            return jnp.asarray(self.offset, int_dtype())
        from ..schedule import theta_from_env

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
    """``z = select_n(pred(x), f₀(x), f₁(x), …)`` solved for ``x`` (see the notes of ``ppinv._piecewise``).

    ``support`` is the leaf's own support. Each case is scheduled on the set where the
    predicate selects it, intersected with that support, when the predicate is a comparison
    of the leaf with a constant (:func:`piece_support`): a case invertible there only
    (``x + exp(−x)`` for ``x ≥ 18``, monotone on the piece though not on the line) is then
    solved there, and nested wheres narrow the interval further.
    """

    def __init__(self, anchor, eqns, leaf, known, table, origin, support=None):
        from ..schedule import build_schedule

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
            flat = c.is_const or c in known  # a flat piece: never the one that produced z (``ppinv._piecewise``)
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
