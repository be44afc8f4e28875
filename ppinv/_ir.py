"""A small, release-independent view of a traced program.

ppinv schedules over *relations*: one per primitive equation of the traced
program. This module imports a jaxpr into that view, inlining call-like
primitives (``jit``, ``custom_jvp_call``, ``remat``) so fan-out across
function boundaries is scheduled like any other, and keeping as single
relations the calls that have a rule of their own (a function with a declared
inverse, or a library function such as ``logaddexp``).

A ``custom_vjp`` call is always kept whole: its reverse-mode rule lives on the
call, so a body inlined and evaluated equation by equation would lose it (and
with it any reverse derivative at all when the body is a ``while_loop``, as in
``odeint``). Forward it binds the call itself; solved backwards, the control
rules invert its body (``rules/control.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._compat import CALL_PRIMITIVES, CUSTOM_VJP_P, Literal, call_name, jaxpr_parts, source_summary

_ids = itertools.count()


_FLOAT_DTYPES: dict = {}


def _is_float_dtype(dtype) -> bool:
    """Floating or complex (memoised: the scheduler asks for every variable at every step)."""
    found = _FLOAT_DTYPES.get(dtype)
    if found is None:
        found = isinstance(dtype, np.dtype) and (
            np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating))
        _FLOAT_DTYPES[dtype] = found
    return found


class V:
    """A program variable: an array of fixed shape and dtype.

    ``value`` is set for constants (literals and closed-over arrays), which are
    known before anything else is.
    """

    __slots__ = ("id", "shape", "size", "dtype", "value", "label")

    def __init__(self, shape, dtype, value=None, label=None):
        self.id = next(_ids)
        self.shape = tuple(shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:  # extended dtypes (PRNG keys) have no NumPy equivalent
            self.dtype = dtype
        self.value = value
        self.label = label

    @property
    def is_const(self) -> bool:
        return self.value is not None

    @property
    def is_float(self) -> bool:
        return _is_float_dtype(self.dtype)

    @property
    def aval(self):
        return jax.ShapeDtypeStruct(self.shape, self.dtype)

    def __repr__(self):
        if self.is_const:
            return f"const{list(self.shape)}"
        name = self.label or f"v{self.id}"
        return f"{name}:{getattr(self.dtype, 'name', self.dtype)}{list(self.shape)}"


class Eqn:
    """One relation ``outs = prim(ins; params)``. Ids increase in program order."""

    __slots__ = ("id", "prim", "params", "ins", "outs", "source")

    def __init__(self, prim, params, ins, outs, source):
        self.id = next(_ids)
        self.prim = prim
        self.params = params
        self.ins = tuple(ins)
        self.outs = tuple(outs)
        self.source = source

    @property
    def function(self):
        """For a kept call: the name of the called function."""
        return call_name(self.prim, self.params)

    @property
    def name(self) -> str:
        fn = self.function
        return f"{self.prim.name}[{fn}]" if fn else self.prim.name

    def bind(self, *args):
        if self.prim is CUSTOM_VJP_P:  # the call itself, so that its reverse rule is kept
            return tuple(bind_custom_vjp(self.params, args))
        body_param = CALL_PRIMITIVES.get(self.prim)
        if body_param is not None:  # a kept call: evaluate its body (custom_jvp needs more to bind)
            body, consts = _body_of(self.params[body_param])
            return tuple(jax.core.eval_jaxpr(body, consts, *args))
        out = self.prim.bind(*args, **self.params)
        return tuple(out) if self.prim.multiple_results else (out,)

    def describe(self) -> str:
        ins = ", ".join(map(repr, self.ins))
        outs = ", ".join(map(repr, self.outs))
        return f"{outs} = {self.name}({ins})  at {self.source}"

    def __repr__(self):
        return f"<{self.describe()}>"


def bind_custom_vjp(params, args):
    """Apply a ``custom_vjp`` call equation (``params`` as in its jaxpr) to ``args``, keeping
    its declared derivative for reverse *and* forward mode.

    JAX gives a ``custom_vjp`` function no forward-mode derivative, yet an inverse is checked
    and used with ``jacfwd`` too (dense log|det|, joint solves). The call is wrapped in a
    ``custom_jvp`` whose tangent is ``J·t`` with ``J`` built from the declared reverse rule
    (one pull-back per output entry, batched): transposed for ``grad`` it is that rule's ``Jᵀ·c``.
    """

    @jax.custom_jvp
    def call(*xs):
        return tuple(_bind_custom_vjp_call(params, xs))

    @call.defjvp
    def call_jvp(primals, tangents):
        # the declared rule differentiates the explicit arguments only (not the leading consts)
        wrt = [i for i in range(params["num_consts"], len(primals)) if _is_inexact(primals[i])]

        def of_wrt(*xs):
            full = list(primals)
            for i, x in zip(wrt, xs):
                full[i] = x
            return tuple(_bind_custom_vjp_call(params, full))

        outs, pull_back = jax.vjp(of_wrt, *[primals[i] for i in wrt])
        return outs, _declared_tangents(outs, pull_back, [primals[i] for i in wrt], [tangents[i] for i in wrt])

    return call(*args)


def _bind_custom_vjp_call(params, args):
    """Bind the ``custom_vjp`` call itself, as ``jax.core.eval_jaxpr`` does: its forward and
    backward functions travel with it."""
    bind_params = CUSTOM_VJP_P.get_bind_params(params)
    if isinstance(bind_params, tuple):  # releases that return (subfuns, params)
        subfuns, bind_params = bind_params
        return CUSTOM_VJP_P.bind(*subfuns, *args, **bind_params)
    return CUSTOM_VJP_P.bind(*args, **bind_params)


def _is_inexact(x):
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _declared_tangents(outs, pull_back, primals, tangents):
    """``J·t`` for each output, ``J`` pulled back one output entry at a time (``vmap``)."""
    result = []
    for j, out in enumerate(outs):
        if not _is_inexact(out):
            result.append(np.zeros(np.shape(out), jax.dtypes.float0))
            continue
        basis = jnp.eye(out.size, dtype=out.dtype).reshape((out.size,) + out.shape)

        def pull_entry(e, j=j):
            cot = tuple(e if k == j else jnp.zeros_like(o) if _is_inexact(o)
                        else np.zeros(np.shape(o), jax.dtypes.float0) for k, o in enumerate(outs))
            return pull_back(cot)

        rows = jax.vmap(pull_entry)(basis)  # per input: (out.size, *input.shape)
        t_out = jnp.zeros((out.size,), out.dtype)
        for row, x, t in zip(rows, primals, tangents):
            if _is_inexact(x) and not isinstance(t, jax.custom_derivatives.SymbolicZero):
                t_out = t_out + jnp.tensordot(row, t, axes=np.ndim(x))
        result.append(t_out.reshape(out.shape))
    return tuple(result)


@dataclass
class Program:
    """A flat list of relations between variables, with inputs and outputs."""

    invars: list
    outvars: list
    eqns: list = field(default_factory=list)

    def evaluate(self, *args, record=False):
        """Run the program forward; with ``record`` also return every variable's value."""
        env = {v: jax.numpy.asarray(a) for v, a in zip(self.invars, args)}
        for e in self.eqns:
            vals = [v.value if v.is_const else env[v] for v in e.ins]
            for o, val in zip(e.outs, e.bind(*vals)):
                env[o] = val
        outs = [v.value if v.is_const else env[v] for v in self.outvars]
        return (outs, env) if record else outs


def _freeze(x):
    """A hashable stand-in for an equation parameter."""
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    try:
        hash(x)
        return x
    except TypeError:
        return ("id", id(x))


def _const_key(v):
    if isinstance(v.value, jax.core.Tracer):  # closed over from an enclosing jit: one of its own
        return ("const", id(v))
    arr = np.asarray(v.value)
    if arr.size > 64:
        return ("const", id(v))
    return ("const", arr.dtype.str, arr.shape, arr.tobytes())


_IMPURE = ("random", "rng", "callback", "print", "debug")


def eliminate_common_subexpressions(prog: Program) -> Program:
    """Merge equations that compute the same thing from the same inputs.

    ``x[0]`` written twice traces to two ``slice`` equations; merged, the
    scheduler sees one value used twice (fan-out it can reason about) instead
    of two unrelated unknowns.
    """
    canon = {}
    seen = {}
    eqns = []

    def c(v):
        return canon.get(v, v)

    for e in prog.eqns:
        ins = tuple(c(v) for v in e.ins)
        if any(tag in e.prim.name for tag in _IMPURE):
            kept = Eqn(e.prim, e.params, ins, e.outs, e.source) if ins != e.ins else e
            kept.id = e.id
            eqns.append(kept)
            continue
        key = (e.prim, _freeze(e.params), tuple(_const_key(v) if v.is_const else v.id for v in ins))
        hit = seen.get(key)
        if hit is not None and all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(hit.outs, e.outs)):
            for o, h in zip(e.outs, hit.outs):
                canon[o] = h
            continue
        new = Eqn(e.prim, e.params, ins, e.outs, e.source) if ins != e.ins else e
        new.id = e.id  # ids order equations; keep the original position
        seen[key] = new
        eqns.append(new)
    return Program(prog.invars, [c(v) for v in prog.outvars], eqns)


def fold_constants(prog: Program, max_size: int = 1 << 20) -> Program:
    """Evaluate, once, every relation whose inputs are all constants.

    ``jnp.ones(3)`` traces to a ``broadcast_in_dim`` of a literal: folded, it
    is a constant, so linear maps built from it are decomposed (and checked for
    rank) when the inverse is built, not at every call.
    """
    canon = {}
    eqns = []
    for e in prog.eqns:
        ins = tuple(canon.get(v, v) for v in e.ins)
        picked = _constant_pick(e, ins)
        if picked is not None:  # the relation is the identity on one case; the others are unused
            canon[e.outs[0]] = picked
            continue
        foldable = (
            all(v.is_const for v in ins)  # nullary ones too: ``iota`` (``jnp.eye``, ``arange``)
            and not any(tag in e.prim.name for tag in _IMPURE)
            and all(o.size <= max_size and isinstance(o.dtype, np.dtype) for o in e.outs)
            and e.prim.name not in ("scan", "cond", "while")
        )
        if foldable:
            try:
                with jax.ensure_compile_time_eval():
                    vals = e.bind(*[v.value for v in ins])
                for o, val in zip(e.outs, vals):
                    canon[o] = _const(np.asarray(val))
                continue
            except Exception:  # leave anything that cannot run eagerly to run-time
                pass
        new = Eqn(e.prim, e.params, ins, e.outs, e.source) if ins != e.ins else e
        new.id = e.id
        eqns.append(new)
    return Program(prog.invars, [canon.get(v, v) for v in prog.outvars], eqns)


def _constant_pick(e, ins):
    """The case a ``select_n`` (``jnp.where``) with a constant predicate picks everywhere, else ``None``."""
    if e.prim is not lax.select_n_p or not ins[0].is_const or isinstance(ins[0].value, jax.core.Tracer):
        return None
    k = np.asarray(ins[0].value)
    if k.size == 0 or not np.all(k == k.flat[0]):
        return None
    case, out = ins[1 + int(k.flat[0])], e.outs[0]
    return case if case.shape == out.shape and case.dtype == out.dtype else None


def _const(value) -> V:
    arr = np.asarray(value) if not isinstance(value, jax.Array) else value
    return V(np.shape(arr), arr.dtype, value=arr)


def import_jaxpr(closed, keep_call=None, inputs=None) -> Program:
    """Import a (closed) jaxpr as a :class:`Program`, inlining call-like primitives.

    ``keep_call(eqn) -> bool`` says which call equations stay single relations
    (those with a function-level rule); every other call is inlined.
    ``inputs`` gives, per jaxpr input, the variable to bind it to (default: a
    fresh one each); several positions may share one variable and constants
    are inlined (see :func:`body_inputs`). The program's inputs are the
    distinct non-constant ones, in first-use order.
    """
    jaxpr, consts = jaxpr_parts(closed)
    if inputs is None:
        inputs = [V(v.aval.shape, v.aval.dtype) for v in jaxpr.invars]
    invars = []
    for v in inputs:
        if not v.is_const and v not in invars:
            invars.append(v)
    prog = Program(invars=invars, outvars=[])
    const_vs = [_const(c) for c in consts]
    prog.outvars = _inline(prog, jaxpr, const_vs + list(inputs), keep_call)
    return eliminate_common_subexpressions(fold_complex_linear_maps(fold_constants(prog)))


# --- real linear maps computed through complex values (the DCT: fft, a twiddle factor, real) ----
def _fft_p():
    from jax._src.lax import fft as _fft

    return _fft.fft_p


#: primitives that are linear in their one non-constant operand (``mul``: either side; ``div``: the numerator)
_LINEAR_COMPLEX = frozenset({
    lax.convert_element_type_p, lax.real_p, lax.imag_p, lax.neg_p, lax.add_p, lax.sub_p, lax.mul_p, lax.div_p,
    lax.conj_p, lax.complex_p, lax.reshape_p, lax.slice_p, lax.rev_p, lax.concatenate_p, lax.transpose_p,
    lax.squeeze_p, lax.broadcast_in_dim_p, _fft_p(),
})
_MAX_MAP_ENTRIES = 1 << 14  # a dense matrix of the map: small transforms only


def _is_complex(v):
    return isinstance(v.dtype, np.dtype) and np.issubdtype(v.dtype, np.complexfloating)


def fold_complex_linear_maps(prog: Program) -> Program:
    """Replace each real-to-real *linear* map computed through complex values by one product
    with its matrix (a known constant).

    ``jax.scipy.fft.dct`` casts its real input to complex, applies ``fft``, multiplies by
    twiddle factors and keeps the ``real`` part: a real orthogonal map, but through values no
    real rule or joint linear solve reads. Every relation of such a region is linear in its one
    non-constant operand, the region reads only real variables (through casts) and constants,
    and only real variables (``real``/``imag``) leave it, so the map is ``y = Σᵢ Mᵢ xᵢ`` with
    ``Mᵢ`` its Jacobian, evaluated once; the linear rules then invert it (rank checked there).
    """
    users = {}
    for e in prog.eqns:
        for v in e.ins:
            users.setdefault(v, []).append(e)
    done, replace = set(), {}
    for e in prog.eqns:
        if e in done or not _starts_complex_region(e):
            continue
        region = _complex_region(e, users, set(prog.outvars))
        if region is None:
            continue
        done.update(region)
        folded = _fold_region(region, users, set(prog.outvars))
        if folded is not None:
            replace[min(region, key=lambda q: q.id)] = (region, folded)
    if not replace:
        return prog
    dropped = {q for region, _ in replace.values() for q in region}
    eqns = []
    for e in prog.eqns:
        if e in replace:
            eqns.extend(replace[e][1])
        elif e not in dropped:
            eqns.append(e)
    folded = Program(prog.invars, prog.outvars, eqns)
    return folded if _in_id_order(folded) else prog


def _in_id_order(prog):
    """Every relation reads only inputs, constants and outputs of relations with smaller ids."""
    defined_at = {}
    for e in prog.eqns:
        for o in e.outs:
            defined_at[o] = e.id
    return all(defined_at.get(v, -1) < e.id for e in prog.eqns for v in e.ins if not v.is_const)


def _starts_complex_region(e):
    return (e.prim is lax.convert_element_type_p and _is_complex(e.outs[0]) and not e.ins[0].is_const
            and not _is_complex(e.ins[0]) and e.ins[0].is_float)


def _complex_region(start, users, program_outs):
    """The relations through which ``start``'s complex value flows until it is real again, or
    ``None`` where one of them is not linear in it or a complex value leaves the region."""
    region, frontier = [start], [start.outs[0]]
    seen = {start}
    while frontier:
        v = frontier.pop()
        if v in program_outs:
            return None
        for u in users.get(v, ()):
            if u in seen:
                continue
            if u.prim not in _LINEAR_COMPLEX or not _linear_in_region(u, seen):
                return None
            seen.add(u)
            region.append(u)
            frontier.extend(o for o in u.outs if _is_complex(o))
    return region


def _linear_in_region(u, seen):
    """``u`` reads region values linearly: each other operand a constant (``mul`` with one region
    operand, ``div`` by a constant), or, for sums and concatenations, region values too."""
    inside = {o for q in seen for o in q.outs}
    moving = [i for i, v in enumerate(u.ins) if not v.is_const]
    if any(u.ins[i] not in inside for i in moving):
        return False  # another variable enters the region (an unknown factor)
    if u.prim is lax.mul_p:
        return len(moving) == 1
    if u.prim is lax.div_p:
        return moving == [0]
    return True


def _fold_region(region, users, program_outs):
    """The relations ``y = Σᵢ Mᵢ xᵢ`` replacing ``region`` (ids reused in order), or ``None``."""
    region = sorted(region, key=lambda q: q.id)
    xs = []
    for q in region:
        if q.prim is lax.convert_element_type_p and not _is_complex(q.ins[0]) and q.ins[0] not in xs:
            xs.append(q.ins[0])
    outs = [o for q in region for o in q.outs if not _is_complex(o) and (users.get(o) or o in program_outs)]
    if not outs or sum(o.size * x.size for o in outs for x in xs) > _MAX_MAP_ENTRIES:
        return None

    def region_map(*vals):
        env = dict(zip(xs, vals))
        for q in region:
            for o, val in zip(q.outs, q.bind(*[v.value if v.is_const else env[v] for v in q.ins])):
                env[o] = val
        return [env[o] for o in outs]

    try:
        with jax.ensure_compile_time_eval():
            zeros = [jnp.zeros(x.shape, x.dtype) for x in xs]
            jac = jax.jacfwd(region_map, argnums=tuple(range(len(xs))))(*zeros)
            offsets = region_map(*zeros)
    except Exception:  # a relation that cannot run eagerly here: leave the region as it is
        return None
    if any(np.any(np.asarray(c) != 0) for c in offsets):
        return None  # affine, not linear: not a region of this kind
    mats = [[np.asarray(jac[j][i]).reshape(o.size, x.size) for i, x in enumerate(xs)] for j, o in enumerate(outs)]

    def folded(*vals):
        flat = [jnp.reshape(v, (-1,)) for v in vals]
        return [sum(jnp.matmul(m, x) for m, x in zip(row, flat)).reshape(o.shape).astype(o.dtype)
                for row, o in zip(mats, outs)]

    tmp = Program(invars=list(xs), outvars=[])
    closed = jax.make_jaxpr(folded)(*[x.aval for x in xs])
    body, consts = jaxpr_parts(closed)
    new_outs = _inline(tmp, body, [_const(c) for c in consts] + list(xs), None, region[0].source)
    if len(tmp.eqns) > len(region):
        return None  # (never for a region of casts, fft and products: one product per term)
    rename = dict(zip(new_outs, outs))
    eqns = []
    for q, old in zip(tmp.eqns, region):
        new = Eqn(q.prim, q.params, [rename.get(v, v) for v in q.ins], [rename.get(o, o) for o in q.outs], q.source)
        new.id = old.id  # ids order relations: the map takes the region's place
        eqns.append(new)
    return eqns


def body_inputs(jaxpr_invars, operands, mergeable, inline_consts=True):
    """Inputs of the body of a higher-order relation (``cond``, ``scan``) applied to ``operands``.

    A closed-over value also passed as an operand (``lax.cond(p, lambda v: v * a, ..., a)``)
    reaches the body as two inputs of one variable. Imported as two unknowns, the body would be
    a relation in more unknowns than it has, and its inverse could give the two different
    values. So positions ``i`` with ``mergeable[i]`` that hold the same outer variable share one
    body input, and constant operands become constants of the body (with ``inline_consts``;
    otherwise inputs of their own, as the loop rule passes them per step). Returns one variable per
    body input (pass it to :func:`import_jaxpr` as ``inputs``) and, per position, the index of
    its variable among the distinct non-constant ones (``None`` for a constant).
    """
    inputs, slots, first = [], [], {}
    distinct = []
    for jv, outer, merge in zip(jaxpr_invars, operands, mergeable, strict=True):
        aval = jv.aval
        if outer.is_const and inline_consts:
            inputs.append(_const(np.asarray(outer.value, dtype=aval.dtype).reshape(aval.shape)))
            slots.append(None)
            continue
        if merge and outer in first:
            v = first[outer]
        else:
            v = V(aval.shape, aval.dtype, label=outer.label)
            distinct.append(v)
            if merge:
                first[outer] = v
        inputs.append(v)
        slots.append(distinct.index(v))
    return inputs, slots


def _inline(prog, jaxpr, args, keep_call, outer_source=None):
    env = {}
    argvars = list(jaxpr.constvars) + list(jaxpr.invars)
    for jv, v in zip(argvars, args, strict=True):
        env[jv] = v

    def read(a):
        if isinstance(a, Literal):
            return _const(a.val)
        return env[a]

    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        if eqn.primitive.name == "pvary":  # in the body of a map over one device: the identity
            env.update(zip(eqn.outvars, ins))
            continue
        body_param = CALL_PRIMITIVES.get(eqn.primitive) or _single_device_map(eqn)
        kept = eqn.primitive is CUSTOM_VJP_P or (keep_call and keep_call(eqn))
        if body_param is not None and not kept:
            body, body_consts = _body_of(eqn.params[body_param])
            src = outer_source or source_summary(eqn)
            outs = _inline(prog, body, [_const(c) for c in body_consts] + ins, keep_call, src)
            for jo, o in zip(eqn.outvars, outs):
                env[jo] = o
            continue
        rewrite = _canonical_form(eqn, ins)
        if rewrite is not None:  # the same relation in primitives the overlay inverts
            body, body_consts = jaxpr_parts(rewrite)
            src = outer_source or source_summary(eqn)
            outs = _inline(prog, body, [_const(c) for c in body_consts] + ins, keep_call, src)
            for jo, o in zip(eqn.outvars, outs):
                env[jo] = o
            continue
        outs = [V(o.aval.shape, o.aval.dtype) for o in eqn.outvars]
        for jo, o in zip(eqn.outvars, outs):
            env[jo] = o
        # inside a library function, report the user's call site
        src = outer_source or source_summary(eqn) or "<unknown source>"
        prog.eqns.append(Eqn(eqn.primitive, dict(eqn.params), ins, outs, src))
    return [read(a) for a in jaxpr.outvars]


def _single_device_map(eqn):
    """``"jaxpr"`` for a ``shard_map`` (what ``pmap`` emits) over a mesh of one device: its body
    sees the whole arrays, so it is a call; else ``None``."""
    mesh = eqn.params.get("mesh")
    if eqn.primitive.name != "shard_map" or getattr(mesh, "size", None) != 1 or "jaxpr" not in eqn.params:
        return None
    names = set(mesh.axis_names)
    body = getattr(eqn.params["jaxpr"], "jaxpr", eqn.params["jaxpr"])
    for q in body.eqns:  # a collective over the mesh's axes (psum, all_gather) changes shapes: keep it
        named = {a for v in q.params.values() for a in (v if isinstance(v, (tuple, frozenset)) else (v,))
                 if isinstance(a, str)}
        if q.primitive.name != "pvary" and named & names:
            return None
    return "jaxpr"


def inputs_from_outside(eqns, leaf):
    """Variables ``eqns`` read that none of them defines, other than ``leaf`` and constants
    (the known context of a block solved for ``leaf``), in first-use order."""
    inside = {o for e in eqns for o in e.outs}
    out = []
    for e in eqns:
        for v in e.ins:
            if v is not leaf and v not in inside and not v.is_const and v not in out:
                out.append(v)
    return out


def _canonical_form(eqn, ins):
    """A closed jaxpr computing ``eqn`` from ``ins`` in invertible primitives, or ``None``.

    ``x @ x`` for a vector is one ``dot_general`` with the same operand twice, which
    no rule can solve; as ``sum(x * x)`` it is a sum of squares (simplex and sign θ).
    """
    if eqn.primitive is lax.dot_general_p and len(ins) == 2 and ins[0] is ins[1]:
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        x = ins[0]
        if len(x.shape) == 1 and tuple(lc) == (0,) and tuple(rc) == (0,) and not lb and not rb:
            out_dtype = eqn.outvars[0].aval.dtype
            return jax.make_jaxpr(lambda v, w: jnp.sum(v * w).astype(out_dtype))(
                jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(x.shape, x.dtype)
            )
    return None


def _body_of(body):
    if hasattr(body, "consts"):
        return jaxpr_parts(body)
    return body, []
