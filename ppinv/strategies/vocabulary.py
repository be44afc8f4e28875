"""What random programs are made of (the ops, the known operands, the input supports) and how
each is written as Python code, so that a generated program prints as its own reproducer."""

from __future__ import annotations

import numpy as np
from numpyro.distributions import constraints


# name -> expression over the operand {a}
UNARY = {
    "exp": "jnp.exp({a})",
    "sin": "jnp.sin({a})",
    "tanh": "jnp.tanh({a})",
    "atan": "jnp.arctan({a})",
    "sinh": "jnp.sinh({a})",
    "asinh": "jnp.arcsinh({a})",
    "cbrt": "jnp.cbrt({a})",
    "cube": "{a} ** 3",
    "square": "{a} * {a}",
    "neg": "-{a}",
    "sigmoid": "jax.nn.sigmoid({a})",
    "softplus": "jax.nn.softplus({a})",
    "log1p_exp": "jnp.log1p(jnp.exp({a}))",
    "log_pos": "jnp.log({a} * {a} + 0.5)",
    "sqrt_pos": "jnp.sqrt({a} * {a} + 0.5)",
    "log": "jnp.log({a})",  # only where the input's support keeps it positive
    "sqrt": "jnp.sqrt({a})",
    "atanh": "jnp.arctanh({a})",
    "abs": "jnp.abs({a})",
    "expm1": "jnp.expm1({a})",
    "leaky": "jnp.where({a} > 0, {a}, 0.3 * {a})",
    "elu": "jax.nn.elu({a})",
    "erf": "jax.scipy.special.erf({a})",
    # a piece with no rule, and a where over erf and erfc pieces
    "erfc": "jax.scipy.special.erfc({a})",
    "ndtr": "jax.scipy.special.ndtr({a})",
    # flat pieces: where the output is solved, the flat piece is a schedule of its own
    "relu": "jax.nn.relu({a})",
}
# both operands unknown
BINARY = {
    "add": "{a} + {b}",
    "sub": "{a} - {b}",
    "mul": "{a} * {b}",
    "div": "{a} / {b}",
    "max": "jnp.maximum({a}, {b})",
    "min": "jnp.minimum({a}, {b})",
    "logaddexp": "jnp.logaddexp({a}, {b})",
    # wheres whose predicate moves with θ: each value of the predicate is a piece of the preimage
    "where_pick": "jnp.where({b} > 0, {b}, {a})",
    "where_cmp": "jnp.where({a} > {b}, {a} * {b}, {a} + {b})",
    "where_sum": "jnp.where({a} + {b} > 0.5, {a}, {b})",
}
# one operand known
WITH_CONST = {
    "add": "{a} + {c}",
    "sub": "{a} - {c}",
    "rsub": "{c} - {a}",
    "mul": "{a} * {c}",
    "rmul": "{c} * {a}",
    "div": "{a} / {c}",
    "rdiv": "{c} / {a}",
    "max": "jnp.maximum({a}, {c})",
    "min": "jnp.minimum({c}, {a})",
}
# how a known operand is written: literal, numpy, jnp made while tracing, jnp captured from outside
# (argument_*: an argument of f with that default, which a model passes as its own argument)
CONST_KINDS = ("float", "np_scalar", "jnp_scalar", "captured_scalar", "argument_scalar",
               "np_vector", "jnp_vector", "captured_vector", "argument_vector")

#: The input supports drawn, as (name, arguments) so that programs print as code.
SUPPORTS = (
    ("real",), ("real",), ("real",), ("real",),
    ("positive",), ("nonnegative",), ("unit_interval",),
    ("interval", -3.0, -1.0), ("interval", -1.0, 2.0), ("interval", 0.5, 4.0),
    ("greater_than", -2.0), ("greater_than", 1.0),
    ("less_than", 0.0), ("less_than", -1.0), ("less_than", 2.0),
)

# kind -> positions of the op tuple that index earlier values (for shrinking)
REFS = {
    "unary": (2,), "binary": (2, 3), "const": (2,), "clip": (1,), "cond": (1, 2), "cond_closure": (1, 2, 3),
    "sum": (1,), "cumsum": (1,), "rev": (1,), "pick": (1,), "roll": (1,), "dot": (1, 2), "matvec": (1, 2, 3),
    "vecmat": (1, 2), "scan": (1,), "scan_weak": (1,), "scan_carry": (1,),
}
VECTOR_ONLY = {"sum", "cumsum", "rev", "pick", "roll", "dot", "matvec", "vecmat", "scan", "scan_weak"}

_HEADER = """import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax
from numpyro.distributions import constraints

import ppinv
"""
_HELPERS = {
    "scan": "def _scan_body(c, x):\n    n = 0.5 * c + x\n    return n, n\n",
    "scan_weak": "def _scan_weak_body(c, x):\n    n = 0.5 * c + jnp.sinh(x)\n    return n, n\n",
    "scan_carry": "def _scan_carry_body(c, _):\n    return 1.5 * c + 1.0, None\n",
}


def _fmt(x):
    return repr(round(float(x), 4))


def _vec(values):
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def _mat(m):
    return "[" + ", ".join(_vec(r) for r in m) + "]"


def support_code(spec) -> str:
    name, *args = spec
    if not args:
        return f"constraints.{name}"
    return f"constraints.{name}({', '.join(_fmt(a) for a in args)})"


def make_support(spec):
    name, *args = spec
    s = getattr(constraints, name)
    return s(*args) if args else s


def _prior_code(spec, size) -> str:
    """A prior whose support is ``spec`` (for the model form of a program)."""
    name, *a = spec
    base = {
        "real": "dist.Normal(0.0, 1.0)",
        "positive": "dist.LogNormal(0.0, 1.0)",
        "nonnegative": "dist.Exponential(1.0)",
        "unit_interval": "dist.Beta(2.0, 2.0)",
    }.get(name)
    if name == "interval":
        base = f"dist.Uniform({_fmt(a[0])}, {_fmt(a[1])})"
    elif name == "greater_than":
        base = f"dist.LeftTruncatedDistribution(dist.Normal({_fmt(a[0] + 1)}, 1.0), low={_fmt(a[0])})"
    elif name == "less_than":
        base = f"dist.RightTruncatedDistribution(dist.Normal({_fmt(a[0] - 1)}, 1.0), high={_fmt(a[0])})"
    return base + (f".expand([{size}]).to_event(1)" if size else "")


def _const_literal(vals):
    return _fmt(vals) if np.ndim(vals) == 0 else _vec(vals)


def _const_code(prog, idx):
    kind, vals = prog.consts[idx]
    if kind == "float":
        return _fmt(vals)
    if kind == "np_scalar":
        return f"np.float64({_fmt(vals)})"
    if kind == "jnp_scalar":
        return f"jnp.asarray({_fmt(vals)})"
    if kind == "np_vector":
        return f"np.array({_vec(vals)})"
    if kind == "jnp_vector":
        return f"jnp.array({_vec(vals)})"
    if kind.startswith("argument"):
        return f"K{idx}"
    return f"C{idx}"  # captured


def _expr(op, prog) -> str:
    kind = op[0]
    v = lambda i: f"v{i}"  # noqa: E731
    if kind == "unary":
        return UNARY[op[1]].format(a=v(op[2]))
    if kind == "binary":
        return BINARY[op[1]].format(a=v(op[2]), b=v(op[3]))
    if kind == "const":
        return WITH_CONST[op[1]].format(a=v(op[2]), c=_const_code(prog, op[3]))
    if kind == "clip":
        return f"jnp.clip({v(op[1])}, {_fmt(op[2])}, {_fmt(op[3])})"
    if kind == "cond":
        return f"lax.cond(jnp.all({v(op[2])} > 0), lambda v: 2.0 * v + 1.0, lambda v: jnp.exp(v), {v(op[1])})"
    if kind == "cond_closure":  # the operand may also be closed over, and be the predicate's input
        _, i, j, k = op
        return f"lax.cond(jnp.all({v(j)} > 0.5), lambda v: v * {v(k)}, lambda v: v + jnp.exp({v(k)}), {v(i)})"
    if kind == "sum":  # the total replaces the first entry (shapes stay uniform, nothing is lost)
        return f"jnp.concatenate([jnp.sum({v(op[1])}, keepdims=True), {v(op[1])}[1:]])"
    if kind == "cumsum":
        return f"jnp.cumsum({v(op[1])})"
    if kind == "rev":
        return f"{v(op[1])}[::-1]"
    if kind == "pick":  # one entry broadcast and added to all (a gather with fan-out)
        return f"{v(op[1])} + {v(op[1])}[{op[2] % prog.size}]"
    if kind == "roll":
        k = 1 + op[2] % (prog.size - 1)
        return f"jnp.concatenate([{v(op[1])}[{k}:], {v(op[1])}[:{k}]])"
    if kind == "dot":  # w @ x with both unknown (or x @ x), joined to the rest of x
        return f"jnp.concatenate([jnp.dot({v(op[1])}, {v(op[2])})[None], {v(op[2])}[1:]])"
    if kind == "matvec":  # a matrix whose rows are unknowns
        _, i, j, k, row = op
        rows = [v(i), v(j), f"jnp.array({_vec(row)})"][: prog.size] + [f"jnp.array({_vec(row)})"] * (prog.size - 3)
        return f"jnp.stack([{', '.join(rows)}]) @ {v(k)}"
    if kind == "vecmat":  # against a constant non-square matrix
        _, i, j, a, b = op
        if b is None:  # tall: more rows than columns
            return f"jnp.concatenate([{v(i)} @ np.array({_mat(a)}), {v(j)}[:{prog.size - len(a[0])}]])"
        return f"({v(i)} @ np.array({_mat(a)})) @ np.array({_mat(b)})"
    if kind == "scan":
        return f"lax.scan(_scan_body, jnp.zeros(()), {v(op[1])})[1]"
    if kind == "scan_weak":
        return f"lax.scan(_scan_weak_body, 0.0, {v(op[1])})[1]"
    if kind == "scan_carry":
        return f"lax.scan(_scan_carry_body, {v(op[1])}, None, length=3)[0]"
    raise ValueError(kind)
