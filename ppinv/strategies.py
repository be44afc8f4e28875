"""Hypothesis strategies for random programs, to fuzz inverses (ppinv's or your own rules).

``programs()`` draws straight-line JAX programs as :class:`RandomProgram`
objects. Each program is Python source (``prog.source``, runnable as written:
a failing program is its own reproducer) compiled to ``prog.fn``; its inputs
carry NumPyro supports. What is drawn is what has broken exact inverses:

* every support NumPyro has on the inputs: real, positive, nonnegative,
  unit_interval, intervals (with negative bounds too), greater_than, less_than;
* elementwise functions with and without rules (``erfc``, ``ndtr``), flat
  pieces whose output is solved (``relu``, ``maximum``/``minimum`` of two
  unknowns or against a constant, ``clip``), piecewise ``where``, and ``where``
  over two unknowns whose predicate moves with θ (``where(b > 0, b, a)``);
* arithmetic with fan-out, and known operands of every kind: Python floats,
  numpy and jnp scalars and vectors, jnp arrays captured from the enclosing scope;
* linear maps whose matrix depends on other unknowns (``w @ x`` with both
  unknown, a matrix stacked from unknown rows), vector–matrix products
  against constant non-square matrices;
* ``cond`` with operands also closed over by its branches, ``scan`` with
  weak-typed (Python float) carries, reductions, cumulative sums, picks,
  rotations and joins of small vectors.

The property is :func:`check_program`: either ``ppinv.inverse`` refuses the
program with an :class:`ppinv.InversionError` that explains itself, or the
inverse is sound (``f(g(y, θ)) == y`` at the PGF's θ and at perturbed θ),
complete through the PGF, has the right log|det|, derivatives that agree with
finite differences, and the same values under ``vmap``. Anything else — a wrong
value or any other exception — is a failure, classified by
:func:`check_program` (``FuzzOutcome.failure``) so that long runs can be
counted, and :func:`shrink` reduces a failing program to a small one.
Points where the inversion is ill-posed in floating point (``tanh`` saturated
near ±1) are skipped.

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

import traceback
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from numpyro.distributions import constraints

from .errors import FuzzFailure

__all__ = ["RandomProgram", "programs", "check_program", "check_model_program", "FuzzOutcome", "shrink", "SUPPORTS"]

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


@dataclass
class RandomProgram:
    """A generated program: ``fn(*example_args)`` returns a tuple of outputs.

    ``ops`` lists one tuple per intermediate value (see ``REFS`` for their layouts),
    ``consts`` the known operands ``(kind, values)`` the ops refer to by index,
    ``supports`` one support spec per input (see ``SUPPORTS``).
    """

    ops: list
    n_inputs: int
    size: int  # 0: scalars, else vectors of this length
    outputs: list
    lines: list = field(default_factory=list)  # unused; kept for older callers
    supports: tuple = ()
    consts: tuple = ()

    def __post_init__(self):
        if not self.supports:
            self.supports = (("real",),) * self.n_inputs
        self._fn = self._forward = None

    @property
    def example_args(self):
        shape = () if self.size == 0 else (self.size,)
        return tuple(jnp.ones(shape) for _ in range(self.n_inputs))

    @property
    def support(self):
        """One NumPyro constraint per input, for ``ppinv.inverse(..., support=...)``."""
        return [make_support(s) for s in self.supports]

    @property
    def constrained(self) -> bool:
        return any(s != ("real",) for s in self.supports)

    @property
    def source(self) -> str:
        """The program as Python code, followed by the inverse's construction."""
        shape = "()" if self.size == 0 else f"({self.size},)"
        sup = ", ".join(support_code(s) for s in self.supports)
        return (self._definitions() + f"inv = ppinv.inverse(f, {', '.join(['jnp.ones(' + shape + ')'] * self.n_inputs)}, "
                f"support=[{sup}])\n")

    def model_source(self, data=None) -> str:
        """The program as a NumPyro model: inputs are sample sites with priors on their supports,
        ``argument`` constants are model arguments, outputs are ``deterministic`` sites ``y0, y1, ...``;
        followed by its conditioning on ``data``."""
        kargs = self.model_argument_names
        lines = [f"def model({', '.join(kargs)}):"]
        for i, spec in enumerate(self.supports):
            lines.append(f"    v{i} = numpyro.sample('v{i}', {_prior_code(spec, self.size)})")
        call = ", ".join([f"v{i}" for i in range(self.n_inputs)] + [f"{k}={k}" for k in kargs])
        lines.append(f"    for k, out in enumerate(f({call})):")
        lines.append("        numpyro.deterministic(f'y{k}', out)")
        model = "\n".join(lines) + "\n\n\n"
        values = ", ".join(f"jnp.asarray({_const_literal(v)})" for kind, v in self.consts if kind.startswith("argument"))
        data_code = "{" + ", ".join(f"'{k}': jnp.asarray({np.asarray(v, np.float64).tolist()!r})"
                                    for k, v in (data or {}).items()) + "}"
        return (self._definitions() + model + f"args = ({values}{',' if values else ''})\n"
                f"data = {data_code}\nconditioned = ppinv.condition(model, data)\n")

    @property
    def model_argument_names(self):
        return [f"K{i}" for i, (kind, _) in enumerate(self.consts) if kind.startswith("argument")]

    @property
    def model_arguments(self):
        return tuple(jnp.asarray(v) for kind, v in self.consts if kind.startswith("argument"))

    def _definitions(self) -> str:
        kinds = {op[0] for op in self.ops}
        helpers = "".join(h + "\n" for k, h in _HELPERS.items() if k in kinds)
        captured = "".join(
            f"C{i} = jnp.asarray({_const_literal(vals)})\n"
            for i, (kind, vals) in enumerate(self.consts) if kind.startswith("captured")
        )
        args = ", ".join([f"v{i}" for i in range(self.n_inputs)] + [
            f"K{i}=jnp.asarray({_const_literal(vals)})" for i, (kind, vals) in enumerate(self.consts)
            if kind.startswith("argument")
        ])
        body = "".join(f"    v{self.n_inputs + k} = {_expr(op, self)}\n" for k, op in enumerate(self.ops))
        outs = ", ".join(f"v{i}" for i in self.outputs)
        return (_HEADER + "\n" + captured + ("\n" if captured else "") + helpers
                + f"def f({args}):\n{body}    return ({outs},)\n\n\n")

    @property
    def model(self):
        """The NumPyro model of :meth:`model_source` (call it with ``*prog.model_arguments``)."""
        namespace = {}
        code = self.model_source().rsplit("args = (", 1)[0]
        exec(compile(code, "<ppinv.strategies model>", "exec"), namespace)  # noqa: S102 - generated here
        return namespace["model"]

    @property
    def fn(self):
        """The program as written (what ``ppinv.inverse`` is given)."""
        if self._fn is None:
            code = self._definitions()
            namespace = {}
            exec(compile(code, "<ppinv.strategies program>", "exec"), namespace)  # noqa: S102 - generated here
            self._fn = namespace["f"]
            self._forward = jax.jit(self._fn)
        return self._fn

    @property
    def forward(self):
        """``fn`` compiled, for the many evaluations a check makes."""
        self.fn  # noqa: B018 - builds both
        return self._forward

    def __repr__(self):
        return "RandomProgram:\n" + self.source


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


@st.composite
def _const(draw, size):
    kinds = CONST_KINDS if size else tuple(k for k in CONST_KINDS if not k.endswith("vector"))
    kind = draw(st.sampled_from(kinds))
    mag = st.floats(0.25, 3.0)
    sgn = st.sampled_from([-1.0, 1.0])
    if kind.endswith("vector"):
        return kind, tuple(round(draw(mag) * draw(sgn), 4) for _ in range(size))
    return kind, round(draw(mag) * draw(sgn), 4)


@st.composite
def programs(draw, max_inputs=3, max_ops=8, arrays=True, control_flow=True, supports=True):
    """Random straight-line programs (see the module docstring)."""
    n_inputs = draw(st.integers(1, max_inputs))
    size = draw(st.sampled_from([0, 0, 3] if arrays else [0]))
    n_ops = draw(st.integers(1, max_ops))
    kinds = ["unary", "unary", "binary", "binary", "const", "const", "clip"]
    if size:
        kinds += ["sum", "cumsum", "rev", "pick", "roll", "dot", "matvec", "vecmat"]
    if control_flow:
        kinds += ["cond", "cond_closure", "scan_carry"] + (["scan", "scan_weak"] if size else [])
    sups = tuple(draw(st.sampled_from(SUPPORTS)) if supports else ("real",) for _ in range(n_inputs))
    ops, consts = [], []
    n = n_inputs
    rng = lambda: np.random.default_rng(draw(st.integers(0, 2**31)))  # noqa: E731 - constant matrices
    for _ in range(n_ops):
        kind = draw(st.sampled_from(kinds))
        pick = st.integers(0, n - 1)
        if kind == "unary":
            op = ("unary", draw(st.sampled_from(sorted(UNARY))), draw(pick))
        elif kind == "binary":
            op = ("binary", draw(st.sampled_from(sorted(BINARY))), draw(pick), draw(pick))
        elif kind == "const":
            consts.append(draw(_const(size)))
            op = ("const", draw(st.sampled_from(sorted(WITH_CONST))), draw(pick), len(consts) - 1)
        elif kind == "clip":
            lo = round(draw(st.floats(-2.0, 1.0)), 3)
            op = ("clip", draw(pick), lo, round(lo + draw(st.floats(0.25, 3.0)), 3))
        elif kind == "cond":
            op = ("cond", draw(pick), draw(pick))
        elif kind == "cond_closure":
            i, j = draw(pick), draw(pick)
            op = ("cond_closure", i, j, draw(st.sampled_from([i, j, draw(pick)])))
        elif kind in ("pick", "roll"):
            op = (kind, draw(pick), draw(st.integers(0, 2)))
        elif kind == "dot":
            op = ("dot", draw(pick), draw(pick))
        elif kind == "matvec":
            op = ("matvec", draw(pick), draw(pick), draw(pick), tuple(np.round(rng().normal(size=size), 3).tolist()))
        elif kind == "vecmat":
            cols = draw(st.sampled_from([size - 1, size + 1]))
            a = np.round(rng().normal(size=(size, cols)), 3).tolist()
            b = None if cols < size else np.round(rng().normal(size=(cols, size)), 3).tolist()
            op = ("vecmat", draw(pick), draw(pick), a, b)
        else:
            op = (kind, draw(pick))
        ops.append(op)
        n += 1
    n_out = draw(st.integers(1, min(2, n_inputs)))
    outputs = sorted(set(draw(st.lists(st.integers(n_inputs, n - 1), min_size=n_out, max_size=n_out))))
    return RandomProgram(ops, n_inputs, size, outputs, supports=sups, consts=tuple(consts))


# -- the oracle -------------------------------------------------------------------------------


@dataclass
class FuzzOutcome:
    """``status`` is ``"inverted"`` (all checks passed), ``"refused"`` (a clear InversionError),
    ``"skipped"`` (no random point inside the program's own domain) or ``"failed"``;
    ``failure`` then names the class (``"unsound"``, ``"round trip"``, ``"log|det|"``,
    ``"gradient"``, ``"θ dimension"``, ``"vmap"``, ``"crash while building: TypeError"``, ...)."""

    status: str
    detail: str = ""
    failure: str = ""


def _classify(failures) -> str:
    text = failures[0]
    if "θ dimension" in text:
        return "θ dimension"
    if "under jax.vmap" in text:
        return "vmap"
    if "finite differences" in text or "differentiating" in text:
        return "gradient"
    if "soundness" in text:
        return "unsound"
    if "round trip" in text:
        return "round trip"
    if "log|det|" in text:
        return "log|det|"
    return "other"


def _crash(where, err):
    tb = traceback.extract_tb(err.__traceback__)
    inside = [f for f in tb if "/ppinv/" in f.filename and "/ppinv/testing.py" not in f.filename]
    site = f" at {inside[-1].filename.rsplit('/ppinv/', 1)[1]}:{inside[-1].lineno} ({inside[-1].name})" if inside else ""
    return f"crash {where}: {type(err).__name__}", f"{type(err).__name__}: {str(err)[:300]}{site}"


def _point_probe(prog, inv):
    """``(x, θ) ↦ (y, ∂y/∂x, inv(y, θ), ∂inv(y, θ)/∂y)`` compiled once per program."""
    from jax.flatten_util import ravel_pytree

    def probe(x, theta):
        x_flat, x_unravel = ravel_pytree(tuple(x))
        y_of = lambda v: ravel_pytree(tuple(prog.fn(*x_unravel(v))))[0]  # noqa: E731
        y_flat = y_of(x_flat)
        y_unravel = ravel_pytree(tuple(prog.fn(*x)))[1]
        x_of = lambda v: ravel_pytree(inv(y_unravel(v), theta))[0]  # noqa: E731
        return y_flat, jax.jacfwd(y_of)(x_flat), x_of(y_flat), jax.jacfwd(x_of)(y_flat)

    return jax.jit(probe)


def _usable(probe, x, theta, rtol):
    """Whether ``x`` tests the inverse: ``f`` has full rank there, and recovering ``x``
    from ``y`` is well posed in floating point.

    Where ``∂f/∂x`` has rank below ``dim Y`` (a clip that is flat over the input's
    whole support, so an output is constant), ``y`` is a critical value: the
    parametric inverse of a full-rank map need not reach it, and observed data
    never lands there. The relative condition number ``κ = ‖∂x/∂y‖ ‖y‖ / ‖x‖``
    bounds how much any method loses: ``tanh`` of 16 is 1 − 3e-14, and no inverse
    recovers 16 from it to better than ``κ · eps ≈ 1e-2``; points where ``κ · eps``
    exceeds the tolerance test the arithmetic, not the inverse. Returns ``None``
    where ``y`` is outside the inverse's domain (for the round trip check to judge).
    """
    from jax.flatten_util import ravel_pytree

    y_flat, jac_f, x_back, jac = probe(tuple(x), theta)
    sv = np.linalg.svd(np.asarray(jac_f, np.float64), compute_uv=False)
    if sv.size and not sv[min(jac_f.shape) - 1] > 1e-9 * max(sv[0], 1e-300) or jac_f.shape[0] > jac_f.shape[1]:
        return False
    if not (bool(jnp.all(jnp.isfinite(x_back))) and bool(jnp.all(jnp.isfinite(jac)))):
        return None
    x_flat = ravel_pytree(tuple(x))[0]
    kappa = float(jnp.linalg.norm(jac, 2) * jnp.linalg.norm(y_flat) / jnp.maximum(jnp.linalg.norm(x_flat), 1e-300))
    return bool(jnp.isfinite(kappa)) and kappa * float(jnp.finfo(y_flat.dtype).eps) < rtol / 10


def _saturated(fn, x, y):
    """``y = f(x)`` unchanged when ``x`` is nudged: ``f`` has saturated in floating point (tanh(25) == 1.0)."""
    nudged = fn(*[xi * (1 + 1e-6) + 1e-9 for xi in x])
    return all(bool(jnp.all(a == b)) for a, b in zip(nudged, y))


def _points(prog, inv, seed, n_points, rtol):
    """Random inputs inside the supports where f is finite and the inversion is well posed."""
    from ppinv.testing import sample_inputs

    points = []
    probe = _point_probe(prog, inv)
    for k in jax.random.split(jax.random.PRNGKey(seed), n_points * 4):
        x = sample_inputs(k, prog.example_args, prog.support)
        y = prog.forward(*x)
        if not all(bool(jnp.all(jnp.isfinite(o))) and float(jnp.max(jnp.abs(o))) < 1e6 for o in y):
            continue
        theta = inv.pgf(*x)
        good = _usable(probe, x, theta, rtol)
        if good or (good is None and not _saturated(prog.forward, x, y)):
            points.append(x)
        if len(points) == n_points:
            break
    return points


def check_program(prog: RandomProgram, seed: int = 0, n_points: int = 2, rtol=1e-7, log_det_atol=1e-6,
                  gradients: bool = True, raise_on_failure: bool = True) -> FuzzOutcome:
    """Invert ``prog`` and verify it, or accept a clear refusal.

    Anything else is a failure: raised as :class:`FuzzFailure` (the default, so
    hypothesis shrinks it) or returned with ``status="failed"`` and its class.
    """
    import ppinv
    from ppinv.testing import check_inverse

    outcome = _check(prog, seed, n_points, rtol, log_det_atol, gradients, ppinv, check_inverse)
    if outcome.status == "failed" and raise_on_failure:
        raise FuzzFailure(f"{outcome.failure}: {outcome.detail}\n{prog}")
    return outcome


def _check(prog, seed, n_points, rtol, log_det_atol, gradients, ppinv, check_inverse):
    try:
        inv = ppinv.inverse(prog.fn, *prog.example_args, support=prog.support)
    except ppinv.InversionError as err:
        msg = str(err)
        if len(msg) <= 40:
            return FuzzOutcome("failed", msg, "refusal without an explanation")
        return FuzzOutcome("refused", type(err).__name__)
    except Exception as err:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        return FuzzOutcome("failed", *reversed(_crash("while building", err)))
    try:
        points = _points(prog, inv, seed, n_points, rtol)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("in the PGF or the inverse", err)))
    if not points:
        return FuzzOutcome("skipped", "no finite points")
    try:
        report = check_inverse(prog.forward, *prog.example_args, inv=inv, points=points, rtol=rtol,
                               log_det_atol=log_det_atol, raise_on_failure=False, dense_points=1,
                               gradients=gradients)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("while checking", err)))
    if report.failures:
        return FuzzOutcome("failed", f"{report.failures[:3]}\n{inv.describe()}", _classify(report.failures))
    return FuzzOutcome("inverted")


def check_model_program(prog: RandomProgram, seed: int = 0, rtol=1e-6, raise_on_failure: bool = True) -> FuzzOutcome:
    """``prog`` as a NumPyro model (:meth:`RandomProgram.model_source`), conditioned exactly
    on its outputs simulated at a random point inside the supports.

    Either :func:`ppinv.condition` refuses (an ``InversionError`` or
    ``ConditionError``), or the conditioned model is sound (the original model,
    run on the latents the conditioned model reports, reproduces the data), the
    point the data came from is a valid start (its θ from the PGF has a finite
    potential), and the potential's gradient agrees with finite differences
    (:func:`ppinv.testing.check_conditioned`). Constants of kind ``argument``
    are passed as model arguments, so traced known operands are exercised.
    Programs that ``ppinv.inverse`` refuses are counted as refused.
    """
    import ppinv
    from ppinv.testing import check_conditioned

    outcome, data = _check_model(prog, seed, rtol, ppinv, check_conditioned)
    if outcome.status == "failed" and raise_on_failure:
        raise FuzzFailure(f"{outcome.failure}: {outcome.detail}\n{prog.model_source(data)}")
    return outcome


def _check_model(prog, seed, rtol, ppinv, check_conditioned):
    try:
        inv = ppinv.inverse(prog.fn, *prog.example_args, support=prog.support)
    except ppinv.InversionError as err:
        return FuzzOutcome("refused", type(err).__name__), None
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("while building", err))), None
    try:
        points = _points(prog, inv, seed, 1, 1e-7)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("in the PGF or the inverse", err))), None
    if not points:
        return FuzzOutcome("skipped", "no finite points"), None
    x = points[0]
    data = {f"y{k}": v for k, v in enumerate(prog.forward(*x))}
    latents = {f"v{i}": v for i, v in enumerate(x)}
    margs = prog.model_arguments
    try:
        cm = ppinv.condition(prog.model, data)
        cm.plan(*margs)
    except (ppinv.InversionError, ppinv.ConditionError) as err:
        return FuzzOutcome("refused", f"condition: {type(err).__name__}: {str(err)[:200]}"), data
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("while conditioning", err))), data
    try:
        report = check_conditioned(cm, args=margs, latents=[latents], n_points=2, rtol=rtol, raise_on_failure=False)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("checking the conditioned model", err))), data
    if report.failures:
        text = report.failures[0]
        cls = ("model: unsound" if "unsound" in text else "model: no valid start" if "no start" in text
               else "model: gradient")
        return FuzzOutcome("failed", f"{report.failures[:3]}", cls), data
    return FuzzOutcome("inverted"), data


# -- shrinking --------------------------------------------------------------------------------


def _without_op(prog, k):
    """``prog`` with op ``k`` removed; its uses read the op's first operand instead."""
    op = prog.ops[k]
    removed = prog.n_inputs + k
    stand_in = op[REFS[op[0]][0]]

    def remap(i):
        if i == removed:
            return stand_in
        return i - 1 if i > removed else i

    ops = []
    for o in prog.ops[:k] + prog.ops[k + 1 :]:
        o = list(o)
        for pos in REFS[o[0]]:
            o[pos] = remap(o[pos])
        ops.append(tuple(o))
    outputs = sorted({remap(i) for i in prog.outputs})
    if any(i < prog.n_inputs for i in outputs):
        return None
    return replace(prog, ops=ops, outputs=outputs)


def _without_input(prog, j):
    used = {o[pos] for o in prog.ops for pos in REFS[o[0]]}
    if j in used or prog.n_inputs == 1:
        return None
    shift = lambda i: i - 1 if i > j else i  # noqa: E731
    ops = []
    for o in prog.ops:
        o = list(o)
        for pos in REFS[o[0]]:
            o[pos] = shift(o[pos])
        ops.append(tuple(o))
    sups = prog.supports[:j] + prog.supports[j + 1 :]
    return replace(prog, ops=ops, n_inputs=prog.n_inputs - 1, outputs=[shift(i) for i in prog.outputs], supports=sups)


def _candidates(prog):
    for k in range(len(prog.ops)):
        yield _without_op(prog, k)
    if len(prog.outputs) > 1:
        for i in prog.outputs:
            yield replace(prog, outputs=[o for o in prog.outputs if o != i])
    for j in range(prog.n_inputs):
        yield _without_input(prog, j)
    for j, s in enumerate(prog.supports):
        if s != ("real",):
            yield replace(prog, supports=prog.supports[:j] + (("real",),) + prog.supports[j + 1 :])


def shrink(prog: RandomProgram, still_fails, max_tries: int = 200) -> RandomProgram:
    """A smaller program for which ``still_fails(program)`` holds (greedy: drop ops, outputs,
    unused inputs, supports, while it keeps failing)."""
    tries = 0
    improved = True
    while improved and tries < max_tries:
        improved = False
        for cand in _candidates(prog):
            if cand is None:
                continue
            tries += 1
            try:
                fails = still_fails(cand)
            except Exception:  # noqa: BLE001 - a candidate that breaks differently is not a reduction
                fails = False
            if fails:
                prog, improved = cand, True
                break
            if tries >= max_tries:
                break
    return prog
