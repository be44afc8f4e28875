"""Import a jaxpr into ppinv's view of a program (``ppinv.ir``).

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
rules invert its body (``rules/control/``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._compat import CALL_PRIMITIVES, CUSTOM_VJP_P, Literal, jaxpr_parts, source_summary
from .passes import eliminate_common_subexpressions, fold_constants
from .program import Eqn, Program, V, _body_of, _const


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
