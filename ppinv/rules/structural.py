"""Rules for primitives that move elements around without changing them.

Reshaping, transposing, reversing, squeezing and size-preserving broadcasts are
bijections (``log|det| = 0``). Splitting and joining (``concatenate``,
``stack``, ``split``) are solved when every piece on the unknown side is
unknown; a join with some pieces already known is left to the scheduler's
linear-block solver, since solving it alone would over-determine those pieces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._compat import is_concrete
from ..theta import ThetaSpec
from .table import DEFAULT_RULES, current_table
from ._base import Pattern, Solution, Solver, all_true


def _zero(z):
    return 0.0  # a log|det| known to be zero: the schedule drops it


class _MapSolver(Solver):
    """Solve ``out = p(x)`` for ``x`` through a known inverse map, ``log|det| = 0``."""

    def __init__(self, inverse, description):
        self.inverse = inverse
        self.description = description

    def solve(self, ins, outs, theta):
        x = self.inverse(outs[0])
        return Solution([x] + list(ins[1:]), list(outs), _zero(outs[0]), None)


def _unary_map(make_inverse):
    def rule(pat):
        if len(pat.eqn.ins) < 1 or pat.known_in[0] or not pat.known_out[0]:
            return None
        if any(not k for k in pat.known_in[1:]):
            return None
        inv = make_inverse(pat)
        return None if inv is None else _MapSolver(inv, f"undo {pat.eqn.prim.name}")

    return rule


def _same_support(eqn, sup):
    return sup[0]


def _reshape_back(pat):
    shape = pat.eqn.ins[0].shape
    return lambda z: jnp.reshape(z, shape)


def _broadcast_back(pat):
    src = pat.eqn.ins[0]
    if src.size != pat.eqn.outs[0].size:
        return None  # a real broadcast: one value determines many, so it cannot be solved backward
    return lambda z: jnp.reshape(z, src.shape)


def _transpose_back(pat):
    inv = tuple(int(i) for i in np.argsort(pat.params["permutation"]))
    return lambda z: jnp.transpose(z, inv)


def _rev_back(pat):
    dims = tuple(pat.params["dimensions"])
    return lambda z: lax.rev(z, dims)


def _cumsum_back(pat):
    axis, reverse = pat.params["axis"], pat.params["reverse"]

    def inv(z):
        z = lax.rev(z, (axis,)) if reverse else z
        x = jnp.diff(z, axis=axis, prepend=jnp.zeros_like(lax.slice_in_dim(z, 0, 1, axis=axis)))
        return lax.rev(x, (axis,)) if reverse else x

    return inv


for _prim, _make in [
    (lax.reshape_p, _reshape_back),
    (lax.squeeze_p, _reshape_back),
    (lax.broadcast_in_dim_p, _broadcast_back),
    (lax.transpose_p, _transpose_back),
    (lax.rev_p, _rev_back),
    (lax.cumsum_p, _cumsum_back),
]:
    _r = _unary_map(_make)
    _r.image = _same_support if _prim is not lax.cumsum_p else None
    DEFAULT_RULES.register(_prim, _r)
if hasattr(lax, "expand_dims_p"):
    DEFAULT_RULES.register(lax.expand_dims_p, _unary_map(_reshape_back))


class _CumprodSolver(Solver):
    """``z = cumprod(x)`` for nonzero ``x``: ``x_i = z_i / z_{i-1}``."""

    def __init__(self, axis, reverse):
        self.axis, self.reverse = axis, reverse
        self.description = "undo cumprod"

    def solve(self, ins, outs, theta):
        z = outs[0]
        axis = self.axis
        z = lax.rev(z, (axis,)) if self.reverse else z
        prev = jnp.concatenate([jnp.ones_like(lax.slice_in_dim(z, 0, 1, axis=axis)),
                                lax.slice_in_dim(z, 0, z.shape[axis] - 1, axis=axis)], axis=axis)
        ok = jnp.all(prev != 0)
        prev = jnp.where(prev != 0, prev, 1)
        x = z / prev
        x = lax.rev(x, (axis,)) if self.reverse else x
        return Solution([x], [outs[0]], -jnp.sum(jnp.log(jnp.abs(prev))), ok)


def _cumprod_rule(pat):
    if pat.known_in[0] or not pat.known_out[0]:
        return None
    return _CumprodSolver(pat.params["axis"], pat.params["reverse"])


DEFAULT_RULES.register(lax.cumprod_p, _cumprod_rule)


# --- joins and splits -------------------------------------------------------------
class _SplitSolver(Solver):
    """``z = join(x_1, ..., x_k)`` with every ``x_i`` unknown: cut ``z`` back into pieces."""

    def __init__(self, cut, description):
        self.cut = cut
        self.description = description

    def solve(self, ins, outs, theta):
        return Solution(list(self.cut(outs[0])), list(outs), _zero(outs[0]), None)


def _distinct_unknown_inputs(pat):
    vs = pat.eqn.ins
    return not any(pat.known_in) and len({id(v) for v in vs}) == len(vs)


def _concatenate_rule(pat):
    if not pat.known_out[0] or not _distinct_unknown_inputs(pat):
        return None
    dim = pat.params["dimension"]
    bounds = np.cumsum([v.shape[dim] for v in pat.eqn.ins])[:-1]

    def cut(z):
        return jnp.split(z, bounds, axis=dim)

    return _SplitSolver(cut, "split a concatenation")


def _stack_rule(pat):
    if not pat.known_out[0] or not _distinct_unknown_inputs(pat):
        return None
    axis = pat.params["axis"]
    n = len(pat.eqn.ins)

    def cut(z):
        return [jnp.take(z, i, axis=axis) for i in range(n)]

    return _SplitSolver(cut, "unstack")


def _join_image(eqn, sup):
    return sup[0] if all(s is sup[0] for s in sup) else None


_concatenate_rule.image = _join_image
_stack_rule.image = _join_image
DEFAULT_RULES.register(lax.concatenate_p, _concatenate_rule)
if hasattr(lax, "stack_p"):
    DEFAULT_RULES.register(lax.stack_p, _stack_rule)


class _JoinSolver(Solver):
    """``(z_1, ..., z_k) = split(x)`` with every piece known: join them back."""

    def __init__(self, join, description):
        self.join = join
        self.description = description

    def solve(self, ins, outs, theta):
        return Solution([self.join(outs)], list(outs), _zero(outs[0]), None)


def _split_rule(pat):
    if pat.known_in[0] or not all(pat.known_out):
        return None
    axis = pat.params["axis"]
    return _JoinSolver(lambda zs: jnp.concatenate(zs, axis=axis), "join split pieces")


def _unstack_rule(pat):
    if pat.known_in[0] or not all(pat.known_out):
        return None
    axis = pat.params["axis"]
    return _JoinSolver(lambda zs: jnp.stack(zs, axis=axis), "restack")


if hasattr(lax, "split_p"):
    DEFAULT_RULES.register(lax.split_p, _split_rule)
if hasattr(lax, "unstack_p"):
    DEFAULT_RULES.register(lax.unstack_p, _unstack_rule)


# --- select_n with a constant predicate ----------------------------------------------------
class _PickSolver(Solver):
    def __init__(self, case):
        self.case = case
        self.description = f"a constant predicate picks case {case}"

    def solve(self, ins, outs, theta):
        new = list(ins)
        new[1 + self.case] = outs[0]
        return Solution(new, list(outs), _zero(outs[0]), None)


def _select_n_rule(pat):
    """``select_n(k, *cases)`` with ``k`` a constant that picks one case everywhere."""
    k = pat.const(0)
    if k is None or not pat.known_out[0]:
        return None
    k = np.asarray(k)
    if k.size == 0 or not np.all(k == k.flat[0]):
        return None
    case = int(k.flat[0])
    v = pat.eqn.ins[1 + case]
    if pat.known_in[1 + case] or v.shape != pat.eqn.outs[0].shape:
        return None
    if not all(known for j, known in enumerate(pat.known_in[1:]) if j != case):
        return None  # an unpicked case is not determined here (solving would mark it known)
    return _PickSolver(case)


def _select_n_image(eqn, sup):
    """Every case positive (a guarded divisor ``where(b != 0, b, 1)`` with ``b > 0``): positive."""
    from .arithmetic import _positive, _positive_const

    if all(_positive(s) or _positive_const(v) for s, v in zip(sup[1:], eqn.ins[1:])):
        return constraints.positive
    return None


_select_n_rule.image = _select_n_image
DEFAULT_RULES.register(lax.select_n_p, _select_n_rule)


# --- select_n whose predicate moves with θ, every case unknown -----------------------------
class _FreeCasesSolver(Solver):
    """``z = select_n(k, c₀, …)`` with ``k`` known: the case ``k`` picks is ``z``, every other
    case is free (θ, per element, the unchosen cases in order). Each value of ``k`` is a piece
    of the preimage and each piece is reached; ``(z, θ) ↦ cases`` permutes values: log|det| = 0."""

    def __init__(self, pat):
        z, cases = pat.eqn.outs[0], pat.eqn.ins[1:]
        self.n, self.shape = len(cases), z.shape
        sups = {id(s): s for s in pat.in_support[1:]}
        support = next(iter(sups.values())) if len(sups) == 1 else None
        if support is None or getattr(support, "event_dim", 0):
            support = constraints.real
        lead = () if self.n == 2 else (self.n - 1,)
        self.theta = (ThetaSpec(lead + z.shape, z.dtype, support, "value", pat.eqn.describe()),)
        self.theta_hints = ("unchosen_case",)
        self.description = "the predicate's case is the output, the other cases are free"

    def _picks(self, k):
        return jnp.broadcast_to(jnp.asarray(k).astype(jnp.int32), self.shape)

    def solve(self, ins, outs, theta):
        k, z = self._picks(ins[0]), outs[0]
        free = [theta[0]] if self.n == 2 else list(theta[0])
        cases = []
        for j in range(self.n):
            rank = jnp.clip(jnp.where(j < k, j, j - 1), 0, self.n - 2)  # j among the unchosen cases
            other = free[0] if self.n == 2 else jnp.choose(rank, free, mode="clip")
            cases.append(jnp.where(k == j, z, other.astype(z.dtype)))
        ok = jnp.all((k >= 0) & (k < self.n))
        return Solution([ins[0]] + cases, list(outs), _zero(z), ok)

    def pgf(self, ins, outs):
        k, cases = self._picks(ins[0]), ins[1:]
        free = [jnp.choose(jnp.where(r < k, r, r + 1), cases, mode="clip") for r in range(self.n - 1)]
        return (free[0] if self.n == 2 else jnp.stack(free),)


def _free_cases_rule(pat):
    """A select whose predicate is known but moves with θ (computed from unknowns, or a discrete θ
    choosing the piece), with every case unknown. (A fixed predicate leaves the select linear.)"""
    eqn = pat.eqn
    cases, z = eqn.ins[1:], eqn.outs[0]
    if not (pat.allow_theta and pat.known_in[0] and pat.known_out[0]) or any(pat.known_in[1:]):
        return None
    if pat.structure is None or not pat.structure.moves_with_theta(eqn.ins[0]):
        return None
    if len(set(cases)) != len(cases) or any(not c.is_float or c.shape != z.shape for c in cases):
        return None
    return _FreeCasesSolver(pat)


DEFAULT_RULES.register(lax.select_n_p, _free_cases_rule)


# --- placements with indices known now: gather, scatter, scatter-add, ... -----------------------
# ``x[idx]``, ``jnp.take``, ``z.at[idx].set/add/mul(u)``, ``segment_sum`` with constant indices put
# each element of their floating inputs at a known place of the output (or nowhere). Where the
# unknown elements are a partition of the output entries, the relation is solved entry by entry:
# an entry holding one unknown is that unknown (less the known part); an entry holding several
# is their sum (product), split by the table's ``reduce_sum`` (``reduce_prod``) rule, which
# brings its θ (a simplex for positive summands).

_SCATTERS = {lax.scatter_p: "set", lax.scatter_add_p: "add", lax.scatter_mul_p: "mul"}
#: primitives that only copy elements of their floating inputs (or a fill value) into place;
#: where each output entry comes from is read off the primitive applied to tagged inputs
_COPIES = {
    lax.gather_p, lax.dynamic_slice_p, lax.dynamic_update_slice_p, lax.reshape_p, lax.squeeze_p,
    lax.broadcast_in_dim_p, lax.transpose_p, lax.rev_p, lax.slice_p, lax.pad_p, lax.concatenate_p,
    lax.copy_p,
}
for _name in ("expand_dims_p", "stack_p", "split_p", "unstack_p"):
    if hasattr(lax, _name):
        _COPIES.add(getattr(lax, _name))


class Placement:
    """Where each element of a relation's floating inputs lands in its output(s), decided now.

    ``dest[k]`` (input ``k`` floating, else ``None``): per element of input ``k`` (flat), the
    output entry (flat, over all outputs in order) it lands in, −1 where it lands nowhere
    (overwritten, dropped); ``reach[k]``: in how many entries it lands (a broadcast or a gather
    reads one element several times). ``source``: per output entry, ``(k, j)`` of the element
    it copies, or ``None`` where it is a sum / product of several (``combine``) or a fill value.
    ``combine``: ``"set"`` (each entry holds at most one element), ``"add"`` or ``"mul"``.
    """

    def __init__(self, dest, reach, n_out, combine):
        self.dest, self.reach, self.n_out, self.combine = dest, reach, n_out, combine

    def contributions(self, inputs):
        """Per output entry, how many elements of ``inputs`` land in it."""
        counts = np.zeros(self.n_out, np.int64)
        for k in inputs:
            d = self.dest[k]
            np.add.at(counts, d[d >= 0], 1)
        return counts


def _tag_dtype(total):
    dtype = jnp.result_type(float)
    if total + 1 >= 2 ** np.finfo(dtype).nmant:
        return None  # tags would not be exact
    return dtype


def index_refusal(eqn):
    """Why the places ``eqn`` puts its elements at are not known now, or ``None`` if they are."""
    traced = [i for i, v in enumerate(eqn.ins) if not v.is_float and not (v.is_const and is_concrete(v.value))]
    if not traced:
        return None
    return (
        f"the indices of '{eqn.prim.name}' (operand {traced[0]}) are not constants: which output entries "
        "hold which unknowns is decided only at run time, so ppinv cannot tell, when it builds the "
        f"inverse, whether the relation is a bijection, a sum to split or over-determined:\n    {eqn.describe()}\n"
        "Pass the indices as constants (a NumPy array, or a jnp array closed over rather than an argument)."
    )


def placement(eqn):
    """The :class:`Placement` of ``eqn`` when it is a copy or a scatter with indices known now, else ``None``."""
    if eqn.prim not in _COPIES and eqn.prim not in _SCATTERS:
        return None
    if index_refusal(eqn) is not None or not all(isinstance(o.dtype, np.dtype) for o in eqn.outs):
        return None
    try:
        with jax.ensure_compile_time_eval():
            if eqn.prim in _SCATTERS:
                return _scatter_placement(eqn)
            return _copy_placement(eqn)
    except Exception:  # a primitive that cannot be evaluated on tags: no placement
        return None


def _copy_placement(eqn):
    floats = [k for k, v in enumerate(eqn.ins) if v.is_float]
    total = sum(eqn.ins[k].size for k in floats)
    dtype = _tag_dtype(total)
    if dtype is None:
        return None
    args, starts, offset = [], {}, 0
    for k, v in enumerate(eqn.ins):
        if v.is_float:
            starts[k] = offset
            args.append(jnp.arange(offset + 1, offset + v.size + 1, dtype=dtype).reshape(v.shape))
            offset += v.size
        else:
            args.append(jnp.asarray(v.value))
    tags = np.concatenate([np.ravel(np.asarray(t)) for t in eqn.bind(*args)])
    valid = np.isfinite(tags) & (tags >= 1) & (tags <= total) & (tags == np.round(tags))
    src = np.where(valid, np.round(np.where(valid, tags, 1)).astype(np.int64) - 1, -1)
    dest, reach = [None] * len(eqn.ins), [None] * len(eqn.ins)
    for k in floats:
        n = eqn.ins[k].size
        local = src - starts[k]
        hit = (src >= 0) & (local >= 0) & (local < n)
        reach[k] = np.bincount(local[hit], minlength=n)
        d = np.full(n, -1, np.int64)
        d[local[hit]] = np.nonzero(hit)[0]
        dest[k] = d
    pl = Placement(dest, reach, tags.size, "set")
    pl.filled = ~valid  # entries holding a fill value rather than an element
    owner = {}
    for k in floats:
        for j in range(eqn.ins[k].size):
            owner[starts[k] + j] = (k, j)
    pl.source = [owner.get(int(t)) for t in src]  # per output entry, the element it copies
    return pl


def _scatter_placement(eqn):
    """Operand entry ``p`` stays at ``p`` (unless overwritten by ``set``); update ``i`` lands where
    the scatter-add's transpose (a gather of output tags) reads it from."""
    operand, indices, updates = eqn.ins
    out = eqn.outs[0]
    dtype = _tag_dtype(out.size)
    if dtype is None or not operand.is_float or not updates.is_float:
        return None
    p = eqn.params
    idx = jnp.asarray(indices.value)

    def scatter_add(u):
        return lax.scatter_add(jnp.zeros(out.shape, dtype), idx, u, p["dimension_numbers"],
                               indices_are_sorted=p["indices_are_sorted"], unique_indices=p["unique_indices"],
                               mode=p["mode"])

    tags = jnp.arange(1, out.size + 1, dtype=dtype).reshape(out.shape)
    (read,) = jax.linear_transpose(scatter_add, jax.ShapeDtypeStruct(updates.shape, dtype))(tags)
    read = np.round(np.ravel(np.asarray(read))).astype(np.int64)
    upd_dest = np.where((read >= 1) & (read <= out.size), read - 1, -1)
    combine = _SCATTERS[eqn.prim]
    landed = np.bincount(upd_dest[upd_dest >= 0], minlength=out.size)
    if combine == "set" and np.any(landed > 1):
        return None  # several updates write one entry: which one wins is not defined
    op_dest = np.arange(out.size, dtype=np.int64)
    if combine == "set":
        op_dest = np.where(landed > 0, -1, op_dest)
    dest = [op_dest, None, upd_dest]
    reach = [(d >= 0).astype(np.int64) for d in (op_dest, None, upd_dest) if d is not None]
    pl = Placement(dest, [reach[0], None, reach[1]], out.size, combine)
    pl.filled = np.zeros(out.size, bool)
    return pl


def _reduction_solver(pat, prim, shape, dtype, support):
    """The table's solver of ``z = reduce(x, axis=1)`` for ``x`` of ``shape`` (its θ, its PGF)."""
    from .._ir import V, Eqn

    table = pat.table if pat.table is not None else current_table()
    x, z = V(shape, dtype), V(shape[:1], dtype)
    eqn = Eqn(prim, {"axes": (1,), "out_sharding": None}, [x], [z], pat.eqn.source)
    sub = Pattern(eqn, (False,), (True,), (support,), (None,), allow_theta=True, exclusive=(True,), table=table)
    for rule in table.rules_for(prim):
        solver = rule(sub)
        if solver is not None:
            return solver
    return None


class _PlacementSolver(Solver):
    """Solve a placement for its unknown inputs, entry by entry (see :class:`Placement`)."""

    def __init__(self, pat, pl, unknown, counts):
        eqn = pat.eqn
        self.unknown, self.combine = list(unknown), pl.combine
        self.shapes = [eqn.ins[k].shape for k in unknown]
        self.sizes = [eqn.ins[k].size for k in unknown]
        self.bind = eqn.bind
        float_ins = [k for k, v in enumerate(eqn.ins) if v.is_float]
        self.has_known = any(k not in unknown for k in float_ins)
        self.dtypes = {k: eqn.ins[k].dtype for k in float_ins}
        # members of each entry: positions in the concatenation of the unknown inputs (flat)
        offsets = np.cumsum([0] + self.sizes)
        entry = np.concatenate([pl.dest[k] for k in unknown])
        position = np.arange(offsets[-1])
        order = np.lexsort((position, entry))  # grouped by entry, in element order within each
        self.classes = []  # (size, entries (c,), members (c, size), solver or None)
        theta, hints = [], []
        supports = [pat.in_support[k] for k in unknown]
        support = supports[0] if all(s is supports[0] for s in supports) else None
        reduce_prim = lax.reduce_prod_p if pl.combine == "mul" else lax.reduce_sum_p
        for size in sorted(set(counts.tolist())):
            entries = np.nonzero(counts == size)[0]
            members = position[order][np.isin(entry[order], entries)].reshape(len(entries), size)
            solver = None
            if size > 1:
                solver = _reduction_solver(pat, reduce_prim, (len(entries), size), eqn.outs[0].dtype, support)
                if solver is None:
                    raise _Decline
                theta.extend(solver.theta)
                hints.extend(f"{eqn.prim.name}_{spec.kind}" for spec in solver.theta)
            self.classes.append((size, entries, members, solver))
        self.theta, self.theta_hints = tuple(theta), hints
        solved = np.concatenate([c[2].ravel() for c in self.classes])
        self.gather_back = np.argsort(solved)  # flat unknowns from the classes' values, concatenated
        what = {"set": "copy entries back", "add": "split sums of placed entries", "mul": "split products"}
        self.description = f"undo {eqn.prim.name} with indices known now: {what[pl.combine]}"

    def _residual(self, ins, z):
        """The output with the known elements' part taken out, flat; its log|det| and domain flag."""
        if self.combine == "set" or not self.has_known:
            return jnp.ravel(z), None, None
        unit = 1.0 if self.combine == "mul" else 0.0
        args = [v if k not in self.unknown else None for k, v in enumerate(ins)]
        for k in self.unknown:
            args[k] = jnp.full(self.shapes[self.unknown.index(k)], unit, self.dtypes[k])
        known_part = jnp.ravel(self.bind(*args)[0])
        if self.combine == "add":
            return jnp.ravel(z) - known_part, None, None
        ok = known_part != 0
        safe = jnp.where(ok, known_part, 1.0)
        return jnp.ravel(z) / safe, -jnp.sum(jnp.log(jnp.abs(safe))), ok

    def solve(self, ins, outs, theta):
        r, log_det, ok = self._residual(ins, outs[0])
        values, flags, at = [], [ok], 0
        terms = [] if log_det is None else [log_det]
        for size, entries, members, solver in self.classes:
            if solver is None:
                values.append(r[entries])
                continue
            n = len(solver.theta)
            sol = solver.solve([None], [r[entries]], tuple(theta[at : at + n]))
            at += n
            values.append(jnp.ravel(sol.ins[0]))
            terms.append(sol.log_det)
            flags.append(sol.ok)
        flat = jnp.concatenate(values)[self.gather_back]
        new_ins = list(ins)
        offsets = np.cumsum([0] + self.sizes)
        for k, shape, a, b in zip(self.unknown, self.shapes, offsets[:-1], offsets[1:]):
            new_ins[k] = jnp.reshape(flat[a:b], shape)
        total = sum((jnp.asarray(t) for t in terms if not isinstance(t, float) or t != 0), 0.0)
        return Solution(new_ins, list(outs), total, all_true(*flags))

    def pgf(self, ins, outs):
        if not self.theta:
            return ()
        r, _, _ = self._residual(ins, outs[0])
        flat = jnp.concatenate([jnp.ravel(ins[k]) for k in self.unknown])
        theta = []
        for size, entries, members, solver in self.classes:
            if solver is not None:
                theta.extend(solver.pgf([flat[members]], [r[entries]]))
        return tuple(theta)


class _Decline(Exception):
    pass


def _placement_rule(pat):
    """Copies and scatters with indices known now, solved where the unknown elements partition the output."""
    eqn = pat.eqn
    if len(eqn.outs) != 1 or not pat.known_out[0] or not eqn.outs[0].is_float:
        return None
    unknown = pat.unknown_in
    if not unknown or any(not eqn.ins[k].is_float for k in unknown):
        return None
    if len({id(eqn.ins[k]) for k in unknown}) < len(unknown):
        return None  # one variable at two places
    pl = placement(eqn)
    if pl is None or np.any(pl.filled):
        return None  # a fill value is a constant entry: an observation of it would be a constraint
    if any(np.any(pl.reach[k] != 1) for k in unknown):
        return None  # an element read twice (fixed twice) or nowhere (not fixed here)
    counts = pl.contributions(unknown)
    if np.any(counts == 0):
        return None  # an entry fixed by known elements only: a constraint, not a solve
    if np.any(counts > 1) and not (pat.allow_theta and all(pat.exclusive[k] for k in unknown)):
        return None  # a sum of unknowns: split only when nothing else fixes them
    try:
        return _PlacementSolver(pat, pl, unknown, counts)
    except _Decline:
        return None


for _prim in (lax.gather_p, lax.dynamic_slice_p, lax.dynamic_update_slice_p, *_SCATTERS):
    DEFAULT_RULES.register(_prim, _placement_rule)


# --- a stuck set of relations, entry by entry -------------------------------------------------------
# ``y = z · (1, cumprod(1 − z)[:-1])`` (stick breaking), an autoregressive flow with known weights,
# ``a + b · data.at[idx].set(u)``: each entry of the output fixes one more unknown once the entries
# before it are known, but no relation between whole arrays can be solved. Rewritten with one
# relation per entry (elementwise primitives per entry; copies, pads, slices and scatters with
# known indices as wiring; cumulative ops as chains; reductions and dot products as sums of
# entries), the program is an ordinary one that the scheduler solves entry by entry, in order.
# The scheduler asks for it only when nothing else moves (``_Scheduler._unstick_with_split``).

#: the most entries a split may create (its program has about that many relations)
MAX_SPLIT_ENTRIES = 1024

_ELEMENTWISE = set()
for _name in (
    "add", "sub", "mul", "div", "neg", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos",
    "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "sqrt", "rsqrt", "cbrt",
    "integer_pow", "pow", "abs", "sign", "max", "min", "select_n", "convert_element_type", "erf", "erfc",
    "erf_inv", "lgamma", "digamma", "square", "rem", "floor", "ceil", "round", "is_finite", "lt", "gt", "le",
    "ge", "eq", "ne", "and", "or", "not", "clamp", "copy", "nextafter", "reduce_precision", "stop_gradient",
):
    if hasattr(lax, _name + "_p"):
        _ELEMENTWISE.add(getattr(lax, _name + "_p"))
_CHAINS = {lax.cumsum_p: lax.add_p, lax.cumprod_p: lax.mul_p, lax.cummax_p: lax.max_p, lax.cummin_p: lax.min_p}
_REDUCTIONS = {lax.reduce_sum_p, lax.reduce_prod_p, lax.reduce_max_p, lax.reduce_min_p}


def _binary_params(prim, dtype, cache={}):
    """The parameters ``prim`` (add, mul, max, min) binds with on this JAX release."""
    key = (prim, np.dtype(dtype))
    if key not in cache:
        fn = {lax.add_p: lax.add, lax.mul_p: lax.mul, lax.max_p: lax.max, lax.min_p: lax.min}[prim]
        x = jax.ShapeDtypeStruct((), dtype)
        cache[key] = dict(jax.make_jaxpr(fn)(x, x).jaxpr.eqns[0].params)
    return cache[key]
_SPLITTING = []  # set while a split's own program is scheduled: it is not split again


class _EntryProgram:
    """Builds the entry-by-entry program of a list of relations (see the section comment).

    ``inputs`` (known values and the unknowns no relation defines) keep their array form and
    are cut into entries by a ``split``; every other variable is built from its entries (a
    ``concatenate``) where its array form is needed: observed, computed for the caller, or read
    by a relation that is kept whole (one with no per-entry form).
    """

    def __init__(self, inputs):
        from .._ir import V, _const

        self._V, self._const = V, _const
        self.inputs = set(inputs)
        self.eqns = []
        self.entries = {}
        self.whole = set(inputs)  # variables whose array form is defined in the program
        self.size = 0

    # -- the two forms of a variable ---------------------------------------------------------
    def ents(self, v):
        if v in self.entries:
            return self.entries[v]
        if v.is_const:
            vals = np.ravel(np.asarray(v.value))
            out = [self._const(np.asarray(x, v.dtype)) for x in vals]
        else:
            flat = self._emit(lax.reshape_p, {"new_sizes": (v.size,), "dimensions": None, "sharding": None},
                              [v], (v.size,), v.dtype)
            if v.size == 1:
                pieces = [flat]
            else:
                pieces = self._emit_multi(lax.split_p, {"sizes": (1,) * v.size, "axis": 0}, [flat],
                                          [((1,), v.dtype)] * v.size)
            out = [self._emit(lax.squeeze_p, {"dimensions": (0,)}, [p], (), v.dtype) for p in pieces]
        self.entries[v] = out
        return out

    def whole_of(self, v):
        """``v`` in array form, joined from its entries if it has none yet."""
        if v.is_const or v in self.whole:
            return v
        self.whole.add(v)
        self._join(self.entries[v], v)
        return v

    def _join(self, entries, out):
        """Define ``out`` (a fresh or an original variable) as the array of ``entries``."""
        ones = [self._emit(lax.broadcast_in_dim_p, {"shape": (1,), "broadcast_dimensions": (), "sharding": None},
                           [e], (1,), e.dtype) for e in entries]
        flat = ones[0] if len(ones) == 1 else self._emit(lax.concatenate_p, {"dimension": 0}, ones,
                                                          (len(ones),), out.dtype)
        self.eqns.append(self._eqn(lax.reshape_p, {"new_sizes": tuple(out.shape), "dimensions": None,
                                                   "sharding": None}, [flat], [out]))
        return out

    # -- emitting relations ------------------------------------------------------------------
    def _eqn(self, prim, params, ins, outs):
        from .._ir import Eqn

        return Eqn(prim, params, ins, outs, self.source)

    def _emit(self, prim, params, ins, shape, dtype):
        return self._emit_multi(prim, params, ins, [(shape, dtype)])[0]

    def _emit_multi(self, prim, params, ins, avals):
        outs = [self._V(shape, dtype) for shape, dtype in avals]
        self.size += sum(o.size for o in outs)
        if self.size > MAX_SPLIT_ENTRIES * 8:
            raise _Decline
        self.eqns.append(self._eqn(prim, params, ins, outs))
        return outs

    def _scalar(self, prim, params, ins, dtype):
        """One entry ``prim(ins)``: evaluated now when every input is a constant."""
        if params is None:
            params = _binary_params(prim, dtype)
        if all(v.is_const for v in ins):
            with jax.ensure_compile_time_eval():
                val = prim.bind(*[v.value for v in ins], **params)
            return self._const(np.asarray(val, dtype))
        return self._emit(prim, params, ins, (), dtype)

    def _entry(self, prim, params, ins, dtype):
        """One entry of an elementwise relation. A select whose predicate is a constant here is
        the case it picks (the others do not enter this entry, and are not solved from it)."""
        if prim is lax.select_n_p and ins[0].is_const:
            case = ins[1 + int(np.asarray(ins[0].value))]
            if case.dtype == dtype:
                return case
        return self._scalar(prim, params, ins, dtype)

    def _reduce(self, prim, params, terms, dtype):
        """``prim`` (a reduction) over ``terms``: constants folded, one unknown term kept as it is."""
        combine = {lax.reduce_sum_p: lax.add_p, lax.reduce_prod_p: lax.mul_p,
                   lax.reduce_max_p: lax.max_p, lax.reduce_min_p: lax.min_p}[prim]
        consts = [t for t in terms if t.is_const]
        unknown = [t for t in terms if not t.is_const]
        const = None
        for c in consts:
            const = c if const is None else self._scalar(combine, None, [const, c], dtype)
        identity = {lax.add_p: 0.0, lax.mul_p: 1.0}.get(combine)
        if const is not None and identity is not None and np.all(np.asarray(const.value) == identity) and unknown:
            const = None
        if not unknown:
            return const if const is not None else self._const(np.asarray(identity if identity is not None else 0.0, dtype))
        if len(unknown) == 1:
            total = unknown[0]
        else:
            vec = self._join(unknown, self._V((len(unknown),), dtype))
            total = self._emit(prim, {**params, "axes": (0,)}, [vec], (), dtype)
        return total if const is None else self._scalar(combine, None, [total, const], dtype)

    # -- one relation --------------------------------------------------------------------------
    def add(self, e):
        self.source = e.source
        p = e.prim
        if p in _ELEMENTWISE and self._is_elementwise(e):
            o = e.outs[0]
            ins = [self.ents(v) for v in e.ins]
            self.entries[o] = [self._entry(p, e.params, [x[k] if len(x) > 1 else x[0] for x in ins], o.dtype)
                               for k in range(o.size)]
        elif p in _COPIES or p in _SCATTERS:
            self._place(e)
        elif p in _CHAINS:
            self._chain(e)
        elif p in _REDUCTIONS and e.outs[0].is_float:
            self._reduction(e)
        elif p is lax.dot_general_p and all(v.dtype == e.outs[0].dtype for v in e.ins):
            self._dot(e)
        else:  # kept whole: its own rule solves it once its neighbours are known as arrays
            self.eqns.append(self._eqn(p, e.params, [self.whole_of(v) for v in e.ins], list(e.outs)))
            self.whole.update(e.outs)

    @staticmethod
    def _is_elementwise(e):
        shape = e.outs[0].shape
        return len(e.outs) == 1 and all(v.shape in (shape, ()) for v in e.ins)

    def _place(self, e):
        refusal = index_refusal(e)
        if refusal is not None:
            from ..errors import InversionError

            raise InversionError("cannot solve these relations entry by entry: " + refusal)
        pl = placement(e)
        if pl is None or np.any(pl.filled):
            raise _Decline
        ins = [self.ents(v) if v.is_float else None for v in e.ins]
        sources = [[] for _ in range(pl.n_out)]
        for k, d in enumerate(pl.dest):
            if d is None:
                continue
            for j in np.nonzero(d >= 0)[0]:
                sources[d[j]].append(ins[k][j])
        if e.prim in _COPIES:  # an element may be copied to several entries (a broadcast, a gather)
            sources = [[ins[k][j]] for k, j in pl.source]
        flat = []
        o0 = e.outs[0]
        for terms in sources:
            if pl.combine == "set":
                if len(terms) != 1:
                    raise _Decline
                flat.append(terms[0])
            else:
                prim = lax.reduce_sum_p if pl.combine == "add" else lax.reduce_prod_p
                flat.append(self._reduce(prim, {}, terms, o0.dtype))
        at = 0
        for o in e.outs:
            self.entries[o] = flat[at : at + o.size]
            at += o.size

    def _chain(self, e):
        x, o = e.ins[0], e.outs[0]
        axis, reverse = e.params["axis"], e.params["reverse"]
        idx = np.moveaxis(np.arange(x.size).reshape(x.shape), axis, -1).reshape(-1, x.shape[axis])
        xs, out = self.ents(x), [None] * o.size
        for row in idx:
            order = row[::-1] if reverse else row
            acc = None
            for i in order:
                acc = xs[i] if acc is None else self._scalar(_CHAINS[e.prim], None, [acc, xs[i]], o.dtype)
                out[i] = acc
        self.entries[o] = out

    def _reduction(self, e):
        x, o = e.ins[0], e.outs[0]
        axes = tuple(e.params["axes"])
        rest = [d for d in range(len(x.shape)) if d not in axes]
        idx = np.transpose(np.arange(x.size).reshape(x.shape), rest + list(axes)).reshape(o.size, -1)
        xs = self.ents(x)
        params = {k: v for k, v in e.params.items() if k != "axes"}
        self.entries[o] = [self._reduce(e.prim, params, [xs[i] for i in row], o.dtype) for row in idx]

    def _dot(self, e):
        (lc, rc), (lb, rb) = e.params["dimension_numbers"]
        a, b, o = e.ins[0], e.ins[1], e.outs[0]

        def canonical(v, contract, batch):
            free = [d for d in range(len(v.shape)) if d not in tuple(contract) + tuple(batch)]
            idx = np.transpose(np.arange(v.size).reshape(v.shape), list(batch) + free + list(contract))
            nb = int(np.prod([v.shape[d] for d in batch], dtype=np.int64))
            nc = int(np.prod([v.shape[d] for d in contract], dtype=np.int64))
            return idx.reshape(nb, -1, nc)

        ia, ib = canonical(a, lc, lb), canonical(b, rc, rb)  # (batch, m, k), (batch, n, k)
        xa, xb = self.ents(a), self.ents(b)
        out = []
        for bi in range(ia.shape[0]):
            for i in range(ia.shape[1]):
                for j in range(ib.shape[1]):
                    terms = []
                    for ka, kb in zip(ia[bi, i], ib[bi, j]):
                        u, w = xa[ka], xb[kb]
                        if any(t.is_const and np.asarray(t.value) == 0 for t in (u, w)):
                            continue  # a zero coefficient: the term is not there
                        if u.is_const and np.asarray(u.value) == 1:
                            terms.append(w)
                        elif w.is_const and np.asarray(w.value) == 1:
                            terms.append(u)
                        else:
                            terms.append(self._scalar(lax.mul_p, None, [u, w], o.dtype))
                    out.append(self._reduce(lax.reduce_sum_p, {"out_sharding": None}, terms, o.dtype))
        self.entries[o] = out


class EntrySplitBlock:
    """Relations solved entry by entry: the schedule of their entry program, as one step.

    Its interface is a linear block's (``_block.LinearBlock``): ``anchors`` (the relations
    whose outputs are known: the block solves them), ``known_inputs``, ``leaves`` (the unknowns
    no relation defines: the block determines them, the other relations are then evaluated
    forward), ``theta``, ``solve(known_env, observed, theta)`` and ``pgf(known_env, leaf_values)``.
    """

    def __init__(self, eqns, is_known, supports, table, names):
        from .._ir import Program
        from ..schedule import build_schedule

        self.anchors = [e for e in eqns if any(is_known(o) for o in e.outs)]
        if not self.anchors or any(not all(is_known(o) for o in e.outs) for e in self.anchors):
            raise _Decline
        defined = {o for e in eqns for o in e.outs}
        read = []
        for e in eqns:
            read += [v for v in e.ins if not v.is_const and v not in read]
        self.known_inputs = [v for v in read if is_known(v) and v not in defined]
        roots = [v for v in read if not is_known(v) and v not in defined]
        inner = [o for e in eqns for o in e.outs if not is_known(o)]
        observed = [o for e in self.anchors for o in e.outs]
        if sum(v.size for v in roots + inner + observed) > MAX_SPLIT_ENTRIES:
            raise _Decline
        if all(v.size <= 1 for e in eqns for v in list(e.ins) + list(e.outs)):
            raise _Decline  # entries already
        prog = _EntryProgram(self.known_inputs + roots)
        for e in eqns:
            prog.add(e)
        for v in observed:
            prog.whole_of(v)
        self.program = Program(self.known_inputs + roots, observed, prog.eqns)
        sub_supports, sub_names = {}, {}
        for v in roots:
            sup, name = supports.get(v), names.get(v)
            if sup is not None:
                sub_supports[v] = sup
            for k, x in enumerate(prog.entries.get(v, ())):
                if sup is not None and not x.is_const:
                    sub_supports[x] = _entry_support(sup)
                if name is not None:
                    sub_names[x] = f"{name}_{k}"
        self.leaves = roots  # what the relations compute from them is evaluated forward afterwards
        _SPLITTING.append(True)
        try:
            self.schedule = build_schedule(self.program, self.known_inputs, roots, observed, sub_supports, table,
                                           sub_names)
        finally:
            _SPLITTING.pop()
        self.theta_hints = list(self.schedule.theta)
        self.theta = tuple(self.schedule.theta.values())
        self.description = (f"entry by entry: {len(eqns)} relation(s) as {len(prog.eqns)} relations of their "
                            f"entries, solved in order")

    def solve(self, known_env, observed, theta):
        from ..schedule import run_schedule_extra

        xs, log_det, ok, _ = run_schedule_extra(
            self.schedule, [known_env[v] for v in self.known_inputs], observed, dict(zip(self.theta_hints, theta)))
        return list(xs), log_det, ok

    def pgf(self, known_env, leaf_values):
        from ..schedule import theta_from_env

        env = dict(known_env)
        env.update(zip(self.leaves, leaf_values))
        _, full = self.program.evaluate(*[env[v] for v in self.program.invars], record=True)
        theta = theta_from_env(self.schedule, full)
        return tuple(theta[n] for n in self.theta_hints)


def _entry_support(sup):
    while isinstance(sup, constraints.independent):
        sup = sup.base_constraint
    return sup


def entry_split_block(eqns, is_known, supports, table, names):
    """An :class:`EntrySplitBlock` of ``eqns`` (in program order), or ``None`` where the split
    would not help (too large, entries already, or its schedule fails too). Indices that are not
    constants in a copy or scatter among them are refused (``InversionError``) with the reason."""
    if _SPLITTING:
        return None
    from ..errors import InversionError

    try:
        return EntrySplitBlock(eqns, is_known, supports, table, names)
    except _Decline:
        return None
    except InversionError as err:
        if "cannot solve these relations entry by entry" in str(err):
            raise
        return None
