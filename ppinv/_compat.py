"""What differs between the JAX releases ppinv supports (0.10.x and 0.12.x).

Everything version-specific lives here so the rest of the library reads the
same on every release. Primitive objects that JAX does not export publicly are
discovered by tracing a tiny program and reading the primitive off its jaxpr,
which is stable where import paths are not.
"""

from __future__ import annotations

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "Literal",
    "Var",
    "jaxpr_parts",
    "scan_counts",
    "source_summary",
    "is_concrete",
    "CALL_PRIMITIVES",
    "JIT_P",
    "CUSTOM_JVP_P",
    "CUSTOM_VJP_P",
    "REMAT_P",
    "PURE_CALLBACK_P",
]

Var = jex.Var
Literal = jex.Literal


def jaxpr_parts(closed):
    """Return ``(jaxpr, consts)`` of a closed jaxpr (0.10) or a jaxpr with consts (0.12)."""
    inner = closed.jaxpr
    consts = list(getattr(closed, "consts", ()) or ())
    return inner, consts


def scan_counts(params):
    """``(num_consts, num_carry)`` of a ``scan`` equation on any supported release."""
    if "num_consts" in params:
        return params["num_consts"], params["num_carry"]
    groups = list(params["ft_in"].unpack())  # 0.12: a flat tree of (consts, carry, xs)
    return len(list(groups[0])), len(list(groups[1]))


def source_summary(eqn) -> str:
    """``file:line (function)`` of the user code that produced ``eqn``."""
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - depends on JAX internals
        return "<unknown source>"


def call_name(prim, params):
    """The name of the function a call-like equation calls (``None`` if unknown)."""
    if prim not in CALL_PRIMITIVES:
        return None
    name = params.get("name")
    if name:
        return str(name)
    body = params.get(CALL_PRIMITIVES[prim])
    info = getattr(getattr(body, "jaxpr", body), "debug_info", None)
    src = getattr(info, "func_src_info", None)
    return src.split(" ")[0] if src else None


def is_concrete(x) -> bool:
    """True when ``x`` holds a value now (not a tracer under jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def _primitive_of(fn, *args):
    eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
    return eqns[-1].primitive


def _custom_jvp_example(x):
    @jax.custom_jvp
    def f(x):
        return x

    f.defjvp(lambda p, t: (p[0], t[0]))
    return f(x)


def _custom_vjp_example(x):
    @jax.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda r, g: (g,))
    return f(x)


def _pure_callback_example(x):
    return jax.pure_callback(lambda v: np.asarray(v), jax.ShapeDtypeStruct((), jnp.float32), x)


_x = np.float32(1.0)
JIT_P = _primitive_of(jax.jit(lambda x: x + 1), _x)
CUSTOM_JVP_P = _primitive_of(_custom_jvp_example, _x)
CUSTOM_VJP_P = _primitive_of(_custom_vjp_example, _x)
REMAT_P = _primitive_of(jax.checkpoint(lambda x: x + 1), _x)
PURE_CALLBACK_P = _primitive_of(_pure_callback_example, _x)
SCAN_P = lax.scan_p if hasattr(lax, "scan_p") else _primitive_of(
    lambda x: lax.scan(lambda c, u: (c, u), x, None, length=1)[0], _x
)
COND_P = _primitive_of(lambda x: lax.cond(x > 0, lambda v: v, lambda v: -v, x), _x)
WHILE_P = _primitive_of(lambda x: lax.while_loop(lambda v: v < 1, lambda v: v + 1, x), _x)

#: Call-like primitives whose body ppinv inlines: ``(primitive, param holding the body)``.
CALL_PRIMITIVES = {
    JIT_P: "jaxpr",
    CUSTOM_JVP_P: "call_jaxpr",
    CUSTOM_VJP_P: "call_jaxpr",
    REMAT_P: "jaxpr",
}
