"""The program ppinv schedules over: variables (``V``), relations (``Eqn``, one per primitive
equation, ``custom_vjp`` calls bound whole) and ``Program``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .._compat import CALL_PRIMITIVES, CUSTOM_VJP_P, call_name, jaxpr_parts



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


def _const(value) -> V:
    arr = np.asarray(value) if not isinstance(value, jax.Array) else value
    return V(np.shape(arr), arr.dtype, value=arr)


def _body_of(body):
    if hasattr(body, "consts"):
        return jaxpr_parts(body)
    return body, []
