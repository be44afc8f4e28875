"""Hypothesis strategies for random programs, to fuzz inverses (ppinv's or your own rules).

``programs()`` draws straight-line JAX programs over the primitives ppinv
supports — elementwise functions, arithmetic with fan-out, constants, several
outputs, small arrays with reductions, element picks, rotations and joins, ``cond`` and ``scan`` — as
:class:`RandomProgram` objects with a callable ``fn``, example arguments and a
readable listing. The property to check is :func:`check_program`: either
``ppinv.inverse`` refuses the program with a clear :class:`ppinv.InversionError`,
or its inverse is sound, complete through the PGF and has the right log|det|,
at random points where the inversion is well posed in floating point (points
where any method must lose the tolerance — ``tanh`` saturated near ±1 — are
skipped).

Requires ``hypothesis`` (a test dependency).

Examples
--------
>>> from hypothesis import given, settings
>>> from ppinv.strategies import programs, check_program
>>> @settings(max_examples=5, deadline=None)
... @given(programs())
... def test_fuzz(prog):
...     check_program(prog)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from hypothesis import strategies as st
from jax import lax

__all__ = ["RandomProgram", "programs", "check_program", "FuzzOutcome"]

# name -> (function, needs a positive argument)
UNARY = {
    "exp": (jnp.exp, False),
    "sin": (jnp.sin, False),
    "tanh": (jnp.tanh, False),
    "atan": (jnp.arctan, False),
    "sinh": (jnp.sinh, False),
    "cube": (lambda v: v**3, False),
    "square": (lambda v: v * v, False),
    "neg": (jnp.negative, False),
    "sigmoid": (jax.nn.sigmoid, False),
    "softplus": (jax.nn.softplus, False),
    "log1p_exp": (lambda v: jnp.log1p(jnp.exp(v)), False),
    "log": (jnp.log, True),
    "sqrt": (jnp.sqrt, True),
    "abs": (jnp.abs, False),
    "expm1": (jnp.expm1, False),
    "leaky": (lambda v: jnp.where(v > 0, v, 0.3 * v), False),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@dataclass
class RandomProgram:
    """A generated program: ``fn(*example_args)`` returns a tuple of outputs."""

    ops: list
    n_inputs: int
    size: int  # 0: scalars, else vectors of this length
    outputs: list
    lines: list = field(default_factory=list)

    @property
    def example_args(self):
        shape = () if self.size == 0 else (self.size,)
        return tuple(jnp.ones(shape) for _ in range(self.n_inputs))

    def fn(self, *args):
        vals = list(args)
        for op in self.ops:
            vals.append(_apply(op, vals))
        return tuple(vals[i] for i in self.outputs)

    def __repr__(self):
        return "RandomProgram:\n  " + "\n  ".join(self.lines) + f"\n  return {', '.join(f'v{i}' for i in self.outputs)}"


def _apply(op, vals):
    kind = op[0]
    if kind == "unary":
        _, name, i = op
        fn, positive = UNARY[name]
        v = vals[i]
        return fn(v * v + 0.5) if positive else fn(v)
    if kind == "binary":
        _, name, i, j = op
        return BINARY[name](vals[i], vals[j])
    if kind == "const":
        _, name, i, c = op
        return BINARY[name](vals[i], jnp.asarray(c, vals[i].dtype))
    if kind == "sum":  # a vector reduced, broadcast back so shapes stay uniform
        _, i = op
        v = vals[i]
        return jnp.sum(v) * jnp.ones_like(v) if v.ndim else v
    if kind == "cumsum":
        _, i = op
        return jnp.cumsum(vals[i]) if vals[i].ndim else vals[i]
    if kind == "rev":
        _, i = op
        return vals[i][::-1] if vals[i].ndim else vals[i]
    if kind == "pick":  # one element, broadcast back (slice, squeeze, broadcast)
        _, i, k = op
        v = vals[i]
        return jnp.full_like(v, v[k % v.shape[0]]) if v.ndim else v
    if kind == "roll":  # a rotation by slicing and concatenating
        _, i, k = op
        v = vals[i]
        if not v.ndim:
            return v
        k = 1 + k % (v.shape[0] - 1)
        return jnp.concatenate([v[k:], v[:k]])
    if kind == "cond":
        _, i, j = op
        return lax.cond(jnp.all(vals[j] > 0), lambda v: 2.0 * v + 1.0, lambda v: jnp.exp(v), vals[i])
    if kind == "scan":
        _, i = op
        v = vals[i]
        if not v.ndim:
            return 0.5 * v + 1.0

        def body(c, x):
            n = 0.5 * c + x
            return n, n

        return lax.scan(body, jnp.zeros((), v.dtype), v)[1]
    raise ValueError(kind)


def _describe(op, k):
    kind = op[0]
    if kind == "unary":
        _, name, i = op
        pos = UNARY[name][1]
        return f"v{k} = {name}({'v%d^2+0.5' % i if pos else 'v%d' % i})"
    if kind == "binary":
        return f"v{k} = {op[1]}(v{op[2]}, v{op[3]})"
    if kind == "const":
        return f"v{k} = {op[1]}(v{op[2]}, {op[3]:.3g})"
    if kind == "cond":
        return f"v{k} = cond(all(v{op[2]} > 0), 2v+1, exp(v))(v{op[1]})"
    if kind in ("pick", "roll"):
        return f"v{k} = {kind}(v{op[1]}, {op[2]})"
    return f"v{k} = {kind}(v{op[1]})"


@st.composite
def programs(draw, max_inputs=3, max_ops=8, arrays=True, control_flow=True):
    """Random straight-line programs (see the module docstring)."""
    n_inputs = draw(st.integers(1, max_inputs))
    size = draw(st.sampled_from([0, 0, 3] if arrays else [0]))
    n_ops = draw(st.integers(1, max_ops))
    kinds = ["unary", "binary", "binary", "const"]
    if arrays and size:
        kinds += ["sum", "cumsum", "rev", "pick", "roll"]
    if control_flow:
        kinds += ["cond"] + (["scan"] if size else [])
    ops, lines = [], []
    n = n_inputs
    for _ in range(n_ops):
        kind = draw(st.sampled_from(kinds))
        pick = st.integers(0, n - 1)
        if kind == "unary":
            op = ("unary", draw(st.sampled_from(sorted(UNARY))), draw(pick))
        elif kind == "binary":
            op = ("binary", draw(st.sampled_from(sorted(BINARY))), draw(pick), draw(pick))
        elif kind == "const":
            c = draw(st.floats(0.25, 3.0)) * draw(st.sampled_from([-1.0, 1.0]))
            op = ("const", draw(st.sampled_from(sorted(BINARY))), draw(pick), c)
        elif kind == "cond":
            op = ("cond", draw(pick), draw(pick))
        elif kind in ("pick", "roll"):
            op = (kind, draw(pick), draw(st.integers(0, 2)))
        else:
            op = (kind, draw(pick))
        ops.append(op)
        lines.append(_describe(op, n))
        n += 1
    n_out = draw(st.integers(1, min(2, n_inputs)))
    outputs = sorted(set(draw(st.lists(st.integers(n_inputs, n - 1), min_size=n_out, max_size=n_out))))
    return RandomProgram(ops, n_inputs, size, outputs, lines)


@dataclass
class FuzzOutcome:
    """``status`` is ``"inverted"`` (all checks passed), ``"refused"`` (a clear InversionError)
    or ``"skipped"`` (the random point was outside the program's own domain)."""

    status: str
    detail: str = ""


def _well_conditioned(inv, x, y, rtol, fn=None):
    """Whether recovering ``x`` from ``y`` is well posed in floating point at all.

    The relative condition number ``κ = ‖∂x/∂y‖ ‖y‖ / ‖x‖`` bounds how much any
    method loses: ``tanh`` of 16 is 1 − 3e-14, and no inverse recovers 16 from it to
    better than ``κ · eps ≈ 1e-2``. Points where ``κ · eps`` exceeds the tolerance test
    the arithmetic, not the inverse, and are skipped.
    """
    from jax.flatten_util import ravel_pytree

    try:
        theta = inv.pgf(*x)
        y_flat, unravel = ravel_pytree(tuple(y) if isinstance(y, (tuple, list)) else y)
        jac = jax.jacfwd(lambda v: ravel_pytree(inv(unravel(v), theta))[0])(y_flat)
    except Exception:
        # y = f(x) outside the inverse's domain: only legitimate where f has saturated in
        # floating point (tanh(25) == 1.0), i.e. nudging x leaves y unchanged; anything
        # else is for check_inverse to report
        if fn is None:
            return True
        nudged = fn(*[xi * (1 + 1e-6) + 1e-9 for xi in x])
        return not all(bool(jnp.all(a == b)) for a, b in zip(nudged, y))
    x_flat = ravel_pytree(tuple(x))[0]
    kappa = float(jnp.linalg.norm(jac, 2) * jnp.linalg.norm(y_flat) / jnp.maximum(jnp.linalg.norm(x_flat), 1e-300))
    return bool(jnp.isfinite(kappa)) and kappa * float(jnp.finfo(y_flat.dtype).eps) < rtol / 10


def check_program(prog: RandomProgram, seed: int = 0, n_points: int = 2, rtol=1e-7, log_det_atol=1e-6) -> FuzzOutcome:
    """Invert ``prog`` and verify it, or accept a clear refusal; raise on anything else."""
    import ppinv
    from ppinv.testing import check_inverse, sample_inputs

    try:
        inv = ppinv.inverse(prog.fn, *prog.example_args)
    except ppinv.InversionError as err:
        msg = str(err)
        assert len(msg) > 40, f"refusal without an explanation: {msg!r}\n{prog}"
        return FuzzOutcome("refused", type(err).__name__)
    points = []
    key = jax.random.PRNGKey(seed)
    for k in jax.random.split(key, n_points * 4):
        x = sample_inputs(k, prog.example_args)
        y = prog.fn(*x)
        if all(bool(jnp.all(jnp.isfinite(o))) and float(jnp.max(jnp.abs(o))) < 1e6 for o in y):
            if _well_conditioned(inv, x, y, rtol, prog.fn):
                points.append(x)
        if len(points) == n_points:
            break
    if not points:
        return FuzzOutcome("skipped", "no finite points")
    report = check_inverse(prog.fn, *prog.example_args, inv=inv, points=points, rtol=rtol,
                           log_det_atol=log_det_atol, raise_on_failure=False, dense_points=1)
    assert not report.failures, f"{prog}\n{inv.describe()}\nfailures: {report.failures}"
    return FuzzOutcome("inverted")
