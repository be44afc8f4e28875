"""``cond``/``switch``: every branch inverted with the same knowledge pattern, the index choosing
which runs; the branches share one θ space."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ..._compat import COND_P
from ...errors import InversionError
from ...theta import ThetaSpec, is_constrained
from ..table import DEFAULT_RULES
from .._base import Solution, Solver
from .bodies import _body_program


# --- cond / switch ---------------------------------------------------------------------------
def _held_value(spec):
    """The value a discrete θ leaf of one branch is held at while another branch runs."""
    return np.asarray(spec.support.feasible_like(jnp.zeros(spec.shape, spec.dtype)), spec.dtype)


def _theta_signature(specs):
    return [(tuple(s.shape), np.dtype(s.dtype).name, repr(s.support)) for _, s in specs]


class _CondSolver(Solver):
    """Every branch inverted with the index known; the index picks which runs.

    Each branch is scheduled as a relation in the cond's *distinct* operand variables: a value
    closed over by a branch and also passed as an operand is one unknown, not two. The branches
    share one continuous θ space (their leaves, or one flat real vector when the leaves differ
    only in shape) and their discrete θ of the same kind; a discrete leaf only some branches
    have is held at a fixed value while another branch runs, so that every ``x`` is reached by
    exactly one θ.
    """

    n_index = 1  # the cond's first input is the branch index; the operands follow

    def __init__(self, pat):
        eqn = pat.eqn
        ops = eqn.ins[self.n_index:]
        self.branches = []
        for closed in self._bodies(eqn):
            body, slots = _body_program(closed, pat.table, ops, [True] * len(ops))
            self.branches.append(body)
        self.slots = slots
        n_vars = len(self.branches[0].invars)
        self.first = [slots.index(j) for j in range(n_vars)]  # first operand holding each variable
        self.kops, self.kout = pat.known_in[self.n_index:], pat.known_out
        self.kvar = [self.kops[i] for i in self.first]
        self.unknown_vars = [j for j in range(n_vars) if not self.kvar[j]]
        self.subs = [self._schedule_branch(k, body, pat) for k, body in enumerate(self.branches)]
        self._lay_out_theta(eqn)
        self.description = f"invert each of {len(self.branches)} branches; switch on the index"

    def _bodies(self, eqn):
        return eqn.params["branches"]

    def _where(self, k, eqn):
        return f"branch {k} of the cond at {eqn.source}"

    def _schedule_branch(self, k, body, pat):
        from ...schedule import build_schedule

        known = [v for v, kk in zip(body.invars, self.kvar) if kk]
        unknown = [v for v, kk in zip(body.invars, self.kvar) if not kk]
        observed = [v for v, kk in zip(body.outvars, self.kout) if kk]
        try:
            return build_schedule(body, known, unknown, observed, {}, pat.table, {}, list(body.outvars))
        except InversionError as err:  # the same error, saying where
            err.args = (f"{self._where(k, pat.eqn)}: {err}",) + err.args[1:]
            raise err from None

    def _lay_out_theta(self, eqn):
        per_branch = [list(sub.theta.items()) for sub in self.subs]
        specs, hints = [], []
        # per branch: its θ name -> (position in self.theta, offset, shape); offset None: the whole leaf
        self.leaf_index = [{} for _ in self.subs]
        self._lay_out_continuous([[(n, s) for n, s in items if not s.discrete] for items in per_branch],
                                 specs, hints, eqn)
        self._lay_out_discrete([[(n, s) for n, s in items if s.discrete] for items in per_branch], specs, hints)
        self.theta = tuple(specs)
        self.theta_hints = tuple(hints)

    def _lay_out_continuous(self, cont, specs, hints, eqn):
        """One continuous θ space for every branch: leaf by leaf when the branches' leaves agree,
        else one flat real vector each branch splits into its own leaves (when all are real)."""
        if all(_theta_signature(c) == _theta_signature(cont[0]) for c in cont[1:]):
            for i, (name, spec) in enumerate(cont[0]):
                for k, group in enumerate(cont):
                    self.leaf_index[k][group[i][0]] = (len(specs), None, None)
                specs.append(spec)
                hints.append(f"cond_{name}")
            return
        sizes = [sum(s.continuous_size for _, s in c) for c in cont]
        dtypes = {np.dtype(s.dtype) for c in cont for _, s in c}
        if len(set(sizes)) != 1 or len(dtypes) != 1 or any(is_constrained(s.support) for c in cont for _, s in c):
            raise InversionError(
                f"the branches of the cond at {eqn.source} need different continuous parameters θ "
                f"({[_theta_signature(c) for c in cont]}); ppinv requires every branch to be invertible "
                "with continuous θ of one size, and of the same supports where any is constrained. Rewrite "
                "the branches to have the same structure, or declare the inverse with @ppinv.custom_inverse."
            )
        for k, group in enumerate(cont):
            offset = 0
            for name, spec in group:
                self.leaf_index[k][name] = (len(specs), offset, tuple(spec.shape))
                offset += spec.continuous_size
        specs.append(ThetaSpec((sizes[0],), dtypes.pop(), constraints.real_vector, "value", eqn.describe()))
        hints.append("cond_values")

    def _lay_out_discrete(self, disc, specs, hints):
        """The j-th discrete leaf of a kind in one branch shares a slot with the j-th of that kind
        in the others; a branch holds the slots it does not use at a fixed value."""
        slots = []  # (signature, position, users)
        for k, group in enumerate(disc):
            used = {}
            for name, spec in group:
                (sig,) = _theta_signature([(name, spec)])
                same_kind = [slot for slot in slots if slot[0] == sig]
                j = used[sig] = used.get(sig, -1) + 1
                if j < len(same_kind):
                    slot = same_kind[j]
                else:
                    slot = (sig, len(specs), [])
                    slots.append(slot)
                    specs.append(spec)
                    hints.append(f"cond_branch{k}_{name}")
                slot[2].append(k)
                self.leaf_index[k][name] = (slot[1], None, None)
        self.held = [[] for _ in self.subs]  # per branch: (position, value) of the slots it leaves unused
        for _, i, users in slots:
            if len(users) == len(self.subs):
                hints[i] = "cond_" + hints[i].split("_", 2)[2]
            for k in range(len(self.subs)):
                if k not in users:
                    self.held[k].append((i, _held_value(specs[i])))

    def _branch_theta(self, k, theta):
        """Branch ``k``'s θ leaves, by its own names, from the cond's θ."""
        own = {}
        for name, (i, offset, shape) in self.leaf_index[k].items():
            if offset is None:
                own[name] = theta[i]
            else:
                size = int(np.prod(shape, dtype=np.int64))
                own[name] = jnp.reshape(theta[i][offset : offset + size], shape)
        return own

    def _cond_theta(self, k, own):
        """The cond's θ from branch ``k``'s leaves (the inverse of ``_branch_theta``)."""
        out, pieces = [None] * len(self.theta), {}
        for name, (i, offset, _) in self.leaf_index[k].items():
            if offset is None:
                out[i] = own[name]
            else:
                pieces.setdefault(i, []).append((offset, jnp.ravel(own[name])))
        for i, parts in pieces.items():
            out[i] = jnp.concatenate([p for _, p in sorted(parts, key=lambda part: part[0])])
        for i, value in self.held[k]:
            out[i] = value
        return tuple(jnp.asarray(v, s.dtype) for v, s in zip(out, self.theta))

    def _variable_values(self, ops):
        return [ops[i] for i in self.first]

    def solve(self, ins, outs, theta):
        from ...schedule import run_schedule_extra

        index, ops = ins[: self.n_index], ins[self.n_index :]
        known = [x for x, k in zip(self._variable_values(ops), self.kvar) if k]
        observed = [o for o, k in zip(outs, self.kout) if k]

        def branch(k):
            def run(known, observed, theta):
                own = self._branch_theta(k, theta)
                solved, ld, ok, extra = run_schedule_extra(self.subs[k], list(known), list(observed), own)
                for i, value in self.held[k]:
                    ok = jnp.logical_and(ok, jnp.all(theta[i] == value))
                return tuple(solved), tuple(extra), ld, ok

            return run

        solved, extra, ld, ok = self._run_branch(index, [branch(k) for k in range(len(self.branches))],
                                                 known, observed, tuple(theta))
        by_var = dict(zip(self.unknown_vars, solved))
        new_ins, new_outs = list(ins), list(outs)
        for i, (k, slot) in enumerate(zip(self.kops, self.slots)):
            if not k:
                new_ins[self.n_index + i] = by_var[slot]
        for j, k in enumerate(self.kout):
            if not k:
                new_outs[j] = extra[j]
        return Solution(new_ins, new_outs, ld, ok)

    def pgf(self, ins, outs):
        from ...schedule import theta_from_env

        if not self.theta:
            return ()
        index, ops = ins[: self.n_index], ins[self.n_index :]

        def branch(k):
            def run(values):
                _, env = self.branches[k].evaluate(*values, record=True)
                return self._cond_theta(k, theta_from_env(self.subs[k], env))

            return run

        n = len(self.branches)
        return lax.switch(jnp.clip(index[0], 0, n - 1), [branch(k) for k in range(n)],
                          tuple(self._variable_values(ops)))

    def _run_branch(self, index, branches, *args):
        """The chosen branch's ``(solved, extra, log|det|, ok)``; an index out of range is outside the domain."""
        n = len(branches)
        solved, extra, ld, ok = lax.switch(jnp.clip(index[0], 0, n - 1), branches, *args)
        return solved, extra, ld, jnp.logical_and(ok, (index[0] >= 0) & (index[0] < n))


_cond_solvers: dict = {}  # (relation, what is known, table) -> the solver or the error building it


def _cond_solver(pat, kind=_CondSolver):
    """The solver for this knowledge pattern, built once (it schedules every branch)."""
    key = (id(pat.eqn), pat.known_in, pat.known_out, id(pat.table))
    hit = _cond_solvers.get(key)
    if hit is None or hit[0] is not pat.eqn:
        if len(_cond_solvers) > 512:
            _cond_solvers.clear()
        try:
            hit = (pat.eqn, kind(pat), None)
        except InversionError as err:
            hit = (pat.eqn, None, err)
        _cond_solvers[key] = hit
    if hit[2] is not None:
        raise hit[2]
    return hit[1]


def _cond_rule(pat):
    if not pat.known_in[0] or not any(pat.known_out):
        return None
    if all(pat.known_in):
        return None
    solver = _cond_solver(pat)
    if not pat.allow_theta and any(not s.discrete for s in solver.theta):
        # continuous θ frees a value inside the branches: wait until nothing else can move,
        # as for any rule that consumes θ (the value may be determined by another relation)
        return None
    return solver


DEFAULT_RULES.register(COND_P, _cond_rule)
