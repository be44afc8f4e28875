"""Placements with indices known now (gather, dynamic slices, scatter, scatter-add, scatter-mul):
where each element lands (:class:`Placement`), solved entry by entry where the unknown elements
partition the output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._compat import is_concrete
from ..table import DEFAULT_RULES, current_table
from .._base import Pattern, Solution, Solver, all_true
from .common import _Decline


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
    from ..._ir import V, Eqn

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
