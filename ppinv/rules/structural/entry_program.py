"""The entry-by-entry program of a list of relations (:class:`_EntryProgram`): one relation per
entry, which the scheduler then solves in order (``entries.py``)."""

from __future__ import annotations

import jax
import numpy as np
from jax import lax

from .common import _Decline
from .placements import _COPIES, _SCATTERS, index_refusal, placement


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


class _EntryProgram:
    """Builds the entry-by-entry program of a list of relations (see the section comment).

    ``inputs`` (known values and the unknowns no relation defines) keep their array form and
    are cut into entries by a ``split``; every other variable is built from its entries (a
    ``concatenate``) where its array form is needed: observed, computed for the caller, or read
    by a relation that is kept whole (one with no per-entry form).
    """

    def __init__(self, inputs):
        from ..._ir import V, _const

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
        from ..._ir import Eqn

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
            from ...errors import InversionError

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
