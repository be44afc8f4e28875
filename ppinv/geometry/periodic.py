"""Whether a traced function of a scalar ``t`` is unchanged by ``t → t + 2π``, read off its jaxpr.

Each variable gets a *shift*: an array ``c`` with ``x(t + 2π) = x(t) + 2π·c`` for every ``t``
(in real arithmetic), or ``None`` when no such array is known. ``t`` has shift 1, a constant
and any input other than ``t`` shift 0. Sums, sums of slices and products by constants
combine shifts linearly; ``sin``/``cos``/``tan`` of a whole-number shift, comparisons of
equal shifts and finiteness tests are invariant (shift 0); any other primitive keeps a
shift only where all its inputs are invariant. A function whose output has shift 0 is
2π-periodic in ``t``: its set of ``t`` where it is true repeats every 2π. Nothing is
sampled or tested numerically, so the answer holds for every ``t``.
"""

from __future__ import annotations

import numpy as np

from .._compat import CALL_PRIMITIVES, Literal, jaxpr_parts

__all__ = ["is_periodic"]

_LINEAR = {
    "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose", "slice", "rev", "concatenate",
    "gather", "dynamic_slice", "reduce_sum", "cumsum", "scatter-add", "scatter_add", "stack", "split",
    "unstack", "dynamic_update_slice", "pad", "copy", "copy_p",
}
_INDEX_OPERANDS = {"gather": (1,), "dynamic_slice": None, "scatter-add": (1,), "scatter_add": (1,),
                   "dynamic_update_slice": None}  # None: every operand after the data ones
_DATA_COUNT = {"dynamic_slice": 1, "dynamic_update_slice": 2}
_COMPARISONS = {"lt", "le", "gt", "ge", "eq", "ne"}
_TRIG = {"sin", "cos", "tan"}


def _zero(v):
    return np.zeros(v.aval.shape)


def _is_zero(c):
    return c is not None and not np.any(c)


class _Shifts:
    def __init__(self):
        self.shift, self.value = {}, {}

    def read(self, v):
        if isinstance(v, Literal):
            return np.zeros(np.shape(v.val)), np.asarray(v.val)
        return self.shift.get(v), self.value.get(v)

    def run(self, closed, in_shifts, in_values):
        jaxpr, consts = jaxpr_parts(closed)
        for v, c in zip(jaxpr.constvars, consts):
            self.shift[v], self.value[v] = np.zeros(np.shape(c)), np.asarray(c)
        for v, c, val in zip(jaxpr.invars, in_shifts, in_values):
            self.shift[v] = c
            if val is not None:
                self.value[v] = val
        for e in jaxpr.eqns:
            ins = [self.read(v) for v in e.invars]
            if e.primitive in CALL_PRIMITIVES:
                inner = _Shifts()
                outs = inner.run(e.params[CALL_PRIMITIVES[e.primitive]], [c for c, _ in ins], [x for _, x in ins])
                for v, (c, val) in zip(e.outvars, outs):
                    self.shift[v] = c
                    if val is not None:
                        self.value[v] = val
                continue
            shifts = _equation(e, ins)
            for v, c in zip(e.outvars, shifts):
                self.shift[v] = c
            if all(val is not None for _, val in ins):  # a constant: its value, for later products
                outs = e.primitive.bind(*[val for _, val in ins], **e.params)
                for v, val in zip(e.outvars, outs if e.primitive.multiple_results else [outs]):
                    self.value[v] = np.asarray(val)
        return [self.read(v) for v in jaxpr.outvars]


def _equation(e, ins):
    name = e.primitive.name
    cs = [c for c, _ in ins]
    outs = e.outvars
    if all(_is_zero(c) for c in cs):
        return [_zero(v) for v in outs]
    if any(c is None for c in cs):
        return [None] * len(outs)
    if name in ("add", "sub"):
        return [cs[0] + cs[1] if name == "add" else cs[0] - cs[1]]
    if name == "neg":
        return [-cs[0]]
    if name in ("mul", "div"):
        return [_product(name, ins)]
    if name == "dot_general":  # linear in one operand when the other is a constant
        (ca, va), (cb, vb) = ins
        if _is_zero(ca) and va is not None:
            return [np.asarray(e.primitive.bind(va, cb, **e.params))]
        if _is_zero(cb) and vb is not None:
            return [np.asarray(e.primitive.bind(ca, vb, **e.params))]
        return [None]
    if name in _TRIG:
        return [_zero(outs[0]) if np.all(cs[0] == np.round(cs[0])) else None]
    if name == "is_finite":
        return [_zero(outs[0])]
    if name in _COMPARISONS:
        return [_zero(outs[0]) if np.array_equal(*np.broadcast_arrays(cs[0], cs[1])) else None]
    if name == "select_n":
        cases = cs[1:]
        same = _is_zero(cs[0]) and all(np.array_equal(cases[0], c) for c in cases[1:])
        return [cases[0] if same else None]
    if name == "convert_element_type" and np.issubdtype(np.dtype(e.params["new_dtype"]), np.floating):
        return [cs[0]]
    if name in _LINEAR:
        return _linear(e, ins)
    return [None] * len(outs)


def _product(name, ins):
    (ca, va), (cb, vb) = ins
    if name == "mul" and _is_zero(ca) and va is not None:
        return va * cb
    if _is_zero(cb) and vb is not None:
        return ca * vb if name == "mul" else ca / vb
    return None


def _linear(e, ins):
    """A primitive linear in its data operands: the shifts go through the primitive itself."""
    name = e.primitive.name
    index = _INDEX_OPERANDS.get(name, ())
    if index is None:
        index = tuple(range(_DATA_COUNT[name], len(ins)))
    args = []
    for i, (c, val) in enumerate(ins):
        if i in index:
            if val is None:  # indices that move: the data must not shift at all
                return [None] * len(e.outvars)
            args.append(val)
        else:
            args.append(c.astype(float))
    out = e.primitive.bind(*args, **e.params)
    return [np.asarray(o) for o in (out if e.primitive.multiple_results else [out])]


def is_periodic(closed, t_index=0):
    """Whether every output of ``closed`` is unchanged by adding 2π to its input ``t_index``
    (a float scalar or a one-element array; the other inputs held fixed)."""
    jaxpr, _ = jaxpr_parts(closed)
    shifts = [np.ones(v.aval.shape) if i == t_index else _zero(v) for i, v in enumerate(jaxpr.invars)]
    try:
        outs = _Shifts().run(closed, shifts, [None] * len(shifts))
    except Exception:  # a primitive whose shifts cannot be run: no proof
        return False
    return all(_is_zero(c) for c, _ in outs)
