"""``select_n`` solved on its own: a constant predicate picking one case, or a predicate that moves
with θ with every case unknown (the unchosen cases free)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ...theta import ThetaSpec
from ..table import DEFAULT_RULES
from .._base import Solution, Solver
from .common import _zero


# --- select_n with a constant predicate ----------------------------------------------------
class _PickSolver(Solver):
    def __init__(self, case):
        self.case = case
        self.description = f"a constant predicate picks case {case}"

    def solve(self, ins, outs, theta):
        new = list(ins)
        new[1 + self.case] = outs[0]
        return Solution(new, list(outs), _zero(outs[0]), None)


def _select_n_rule(pat):
    """``select_n(k, *cases)`` with ``k`` a constant that picks one case everywhere."""
    k = pat.const(0)
    if k is None or not pat.known_out[0]:
        return None
    k = np.asarray(k)
    if k.size == 0 or not np.all(k == k.flat[0]):
        return None
    case = int(k.flat[0])
    v = pat.eqn.ins[1 + case]
    if pat.known_in[1 + case] or v.shape != pat.eqn.outs[0].shape:
        return None
    if not all(known for j, known in enumerate(pat.known_in[1:]) if j != case):
        return None  # an unpicked case is not determined here (solving would mark it known)
    return _PickSolver(case)


def _select_n_image(eqn, sup):
    """Every case positive (a guarded divisor ``where(b != 0, b, 1)`` with ``b > 0``): positive."""
    from ..arithmetic import _positive, _positive_const

    if all(_positive(s) or _positive_const(v) for s, v in zip(sup[1:], eqn.ins[1:])):
        return constraints.positive
    return None


_select_n_rule.image = _select_n_image
DEFAULT_RULES.register(lax.select_n_p, _select_n_rule)


# --- select_n whose predicate moves with θ, every case unknown -----------------------------
class _FreeCasesSolver(Solver):
    """``z = select_n(k, c₀, …)`` with ``k`` known: the case ``k`` picks is ``z``, every other
    case is free (θ, per element, the unchosen cases in order). Each value of ``k`` is a piece
    of the preimage and each piece is reached; ``(z, θ) ↦ cases`` permutes values: log|det| = 0."""

    def __init__(self, pat):
        z, cases = pat.eqn.outs[0], pat.eqn.ins[1:]
        self.n, self.shape = len(cases), z.shape
        sups = {id(s): s for s in pat.in_support[1:]}
        support = next(iter(sups.values())) if len(sups) == 1 else None
        if support is None or getattr(support, "event_dim", 0):
            support = constraints.real
        lead = () if self.n == 2 else (self.n - 1,)
        self.theta = (ThetaSpec(lead + z.shape, z.dtype, support, "value", pat.eqn.describe()),)
        self.theta_hints = ("unchosen_case",)
        self.description = "the predicate's case is the output, the other cases are free"

    def _picks(self, k):
        return jnp.broadcast_to(jnp.asarray(k).astype(jnp.int32), self.shape)

    def solve(self, ins, outs, theta):
        k, z = self._picks(ins[0]), outs[0]
        free = [theta[0]] if self.n == 2 else list(theta[0])
        cases = []
        for j in range(self.n):
            rank = jnp.clip(jnp.where(j < k, j, j - 1), 0, self.n - 2)  # j among the unchosen cases
            other = free[0] if self.n == 2 else jnp.choose(rank, free, mode="clip")
            cases.append(jnp.where(k == j, z, other.astype(z.dtype)))
        ok = jnp.all((k >= 0) & (k < self.n))
        return Solution([ins[0]] + cases, list(outs), _zero(z), ok)

    def pgf(self, ins, outs):
        k, cases = self._picks(ins[0]), ins[1:]
        free = [jnp.choose(jnp.where(r < k, r, r + 1), cases, mode="clip") for r in range(self.n - 1)]
        return (free[0] if self.n == 2 else jnp.stack(free),)


def _free_cases_rule(pat):
    """A select whose predicate is known but moves with θ (computed from unknowns, or a discrete θ
    choosing the piece), with every case unknown. (A fixed predicate leaves the select linear.)"""
    eqn = pat.eqn
    cases, z = eqn.ins[1:], eqn.outs[0]
    if not (pat.allow_theta and pat.known_in[0] and pat.known_out[0]) or any(pat.known_in[1:]):
        return None
    if pat.structure is None or not pat.structure.moves_with_theta(eqn.ins[0]):
        return None
    if len(set(cases)) != len(cases) or any(not c.is_float or c.shape != z.shape for c in cases):
        return None
    return _FreeCasesSolver(pat)


DEFAULT_RULES.register(lax.select_n_p, _free_cases_rule)
