"""The plan of an inverse: its steps, and the :class:`Schedule` that holds them.

Every step has the same interface, so that one executor runs a plan and one
walker reads θ back off a forward evaluation (``execute.py``):

* ``run(env, theta) -> (log_det, flags)`` writes the step's values into ``env``
  and returns its log|det| term (``None`` if it has none) and its domain flags;
* ``theta_from(env, specs) -> {name: value}`` is the step's part of the PGF.

The kinds are a variable drawn from θ (:class:`FreeStep`), a relation evaluated
forward (:class:`ForwardStep`), one relation solved by a rule of the table
(:class:`SolveStep`), and a joint solve found by a strategy of ``ppinv.joint``
(:class:`JointStep`: :class:`BlockStep` for several relations and leaves,
:class:`PolyStep` for one relation solved for one variable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp


def read(env, v):
    """The value of ``v``: its constant, or what the plan computed so far."""
    return v.value if v.is_const else env[v]


def cast(val, v):
    """``val`` with the dtype and shape of the program variable ``v``."""
    val = jnp.asarray(val)
    if val.dtype != v.dtype:
        val = val.astype(v.dtype)
    if val.shape != v.shape:
        val = jnp.reshape(val, v.shape)
    return val


def _typed(names, values, specs):
    return {n: jnp.asarray(val).astype(specs[n].dtype) for n, val in zip(names, values)}


@dataclass
class FreeStep:
    """A variable drawn from θ outright."""

    var: object
    name: str
    theta_names: tuple = field(init=False)

    def __post_init__(self):
        self.theta_names = (self.name,)

    def describe(self):
        return f"free   {self.var!r} <- θ[{self.name!r}]"

    def run(self, env, theta):
        env[self.var] = cast(theta[self.name], self.var)
        return None, ()

    def theta_from(self, env, specs):
        return _typed((self.name,), (env[self.var],), specs)


@dataclass
class ForwardStep:
    """Evaluate a relation; outputs already known (discrete ones) are checked instead."""

    eqn: object
    check: tuple = ()
    theta_names = ()

    def describe(self):
        verb = "check " if self.check and all(self.check) else "fwd   "
        return f"{verb} {self.eqn.describe()}"

    def run(self, env, theta):
        e = self.eqn
        check = self.check or (False,) * len(e.outs)
        flags = []
        for o, known, val in zip(e.outs, check, e.bind(*[read(env, v) for v in e.ins])):
            if known:  # a discrete value drawn from θ: the recovered inputs must reproduce it
                flags.append(jnp.all(val == env[o]))
            else:
                env[o] = val
        return None, flags

    def theta_from(self, env, specs):
        return {}


@dataclass
class SolveStep:
    """One relation solved for its unknown places by a rule of the table."""

    eqn: object
    solver: object
    known_in: tuple
    known_out: tuple
    theta_names: tuple

    def describe(self):
        extra = f"  θ: {', '.join(self.theta_names)}" if self.theta_names else ""
        what = self.solver.description or "solve"
        return f"solve  {self.eqn.describe()}\n         [{what}]{extra}"

    def run(self, env, theta):
        e = self.eqn
        ins = [read(env, v) if k else None for v, k in zip(e.ins, self.known_in)]
        outs = [read(env, o) if k else None for o, k in zip(e.outs, self.known_out)]
        sol = self.solver.solve(ins, outs, tuple(theta[n] for n in self.theta_names))
        for v, k, val in zip(e.ins, self.known_in, sol.ins):
            if not k and not v.is_const:
                env[v] = cast(val, v)
        for o, k, val in zip(e.outs, self.known_out, sol.outs):
            if not k:
                env[o] = cast(val, o)
        return sol.log_det, (sol.ok,)

    def theta_from(self, env, specs):
        if not self.theta_names:
            return {}
        e = self.eqn
        vals = self.solver.pgf([read(env, v) for v in e.ins], [read(env, o) for o in e.outs])
        return _typed(self.theta_names, vals, specs)


@dataclass
class JointStep:
    """A joint solve (``ppinv.joint``): ``block`` settles its relations and determines its leaves."""

    block: object
    theta_names: tuple

    def known_env(self, env):
        return {v: read(env, v) for v in self.block.known_inputs}

    def theta(self, theta):
        return tuple(theta[n] for n in self.theta_names)


@dataclass
class BlockStep(JointStep):
    """Several relations solved jointly for several leaves (a linear block, polar coordinates, …).

    ``block.solve(known, observed, θ) -> (leaf values, log_det, ok)`` with the anchors'
    outputs in order; ``block.pgf(known, leaf values) -> θ values``.
    """

    def describe(self):
        rels = "\n         ".join(e.describe() for e in self.block.anchors)
        extra = f"  θ: {', '.join(self.theta_names)}" if self.theta_names else ""
        return f"block  {rels}\n         [{self.block.description}]{extra}"

    def run(self, env, theta):
        b = self.block
        observed = [read(env, o) for e in b.anchors for o in e.outs]
        vals, ld, ok = b.solve(self.known_env(env), observed, self.theta(theta))
        for v, val in zip(b.leaves, vals):
            env[v] = cast(val, v)
        return ld, (ok,)

    def theta_from(self, env, specs):
        if not self.theta_names:
            return {}
        b = self.block
        vals = b.pgf(self.known_env(env), [read(env, v) for v in b.leaves])
        return _typed(self.theta_names, vals, specs)


@dataclass
class PolyStep(JointStep):
    """One variable (``block.leaf``) solved from one relation (``block.anchor``) through the
    relations between them: a polynomial, a monotone function or a piecewise function.

    ``block.solve(known, y, θ) -> (leaf value, log_det, ok)``; ``block.pgf(known, x) -> θ values``.
    """

    def describe(self):
        extra = f"  θ: {', '.join(self.theta_names)}" if self.theta_names else ""
        return f"joint  {self.block.anchor.describe()}\n         [{self.block.description}]{extra}"

    def run(self, env, theta):
        b = self.block
        x, ld, ok = b.solve(self.known_env(env), read(env, b.anchor.outs[0]), self.theta(theta))
        env[b.leaf] = cast(x, b.leaf)
        return ld, (ok,)

    def theta_from(self, env, specs):
        if not self.theta_names:
            return {}
        b = self.block
        vals = b.pgf(self.known_env(env), read(env, b.leaf))
        return _typed(self.theta_names, vals, specs)


@dataclass
class Schedule:
    """The static plan of an inverse: steps plus what θ looks like."""

    steps: list
    theta: dict  # name -> ThetaSpec, in the order the steps consume them
    known_inputs: list
    unknown_inputs: list
    observed: list
    supports: dict = field(default_factory=dict)
    extra_outputs: list = field(default_factory=list)

    @property
    def n_theta(self) -> int:
        return sum(s.continuous_size for s in self.theta.values())

    def describe(self) -> str:
        return "\n".join(f"{i:4d}  {s.describe()}" for i, s in enumerate(self.steps))
