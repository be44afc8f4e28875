"""A generated program (:class:`RandomProgram`): its source, its function, and its NumPyro model."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .vocabulary import _HEADER, _HELPERS, _const_literal, _expr, _prior_code, make_support, support_code


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
