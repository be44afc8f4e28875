"""A strategy declines a candidate by raising :class:`ppinv.InversionError` while building it.

The search then asks the same strategy for its next candidate, or the next strategy, and
frees a variable if none fits: the decline is recorded and named in the error when
nothing else works, and a program that cannot be inverted is still refused with the
specific reason, never half-inverted.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppinv
from ppinv.errors import InversionError, UnderdeterminedError
from ppinv.joint import JointSolve, Strategy, register_strategy, unregister_strategy
from ppinv.schedule import BlockStep
from ppinv.testing import check_inverse

from .test_joint_strategies import SumAndProductBlock


def sum_and_product(a, b):  # no default strategy solves this pair: the tests' strategies do
    return a + b, a * b




def _sum_and_product_pairs(state):
    stalled = state.stalled()
    for s in (e for e in stalled if e.prim is jax.lax.add_p):
        for p in (e for e in stalled if e.prim is jax.lax.mul_p):
            if set(s.ins) == set(p.ins) and not any(state.is_known(v) for v in s.ins):
                yield s, p


def _roots_solve(s, p, hint="larger_first", make_step=None):
    block = SumAndProductBlock(s, p)
    step = make_step or (lambda names: BlockStep(block, tuple(names)))
    return JointSolve(step, block.theta, (hint,), (s, p), tuple(block.leaves))


def _refusing_step(names):
    raise InversionError("this candidate's step cannot be built")


class StepFailsFirst(Strategy):
    """Two candidates for the same pair: the first one's step cannot be built, the second's can."""

    name = "step_fails_first"

    def candidates(self, state):
        for s, p in _sum_and_product_pairs(state):
            yield _roots_solve(s, p, hint="refused_order", make_step=_refusing_step)
            yield _roots_solve(s, p)


class RaisingThenSolving:
    """An iterator (not a generator: it can go on after raising) that refuses its first candidate."""

    def __init__(self, pairs):
        self.pairs, self.asked = list(pairs), 0

    def __iter__(self):
        return self

    def __next__(self):
        self.asked += 1
        if self.asked == 1:
            raise InversionError("the first candidate does not apply here")
        if not self.pairs:
            raise StopIteration
        return _roots_solve(*self.pairs.pop(0))


class IteratorRefusesFirst(Strategy):
    name = "iterator_refuses_first"

    def candidates(self, state):
        return RaisingThenSolving(_sum_and_product_pairs(state))


class AlwaysDeclines(Strategy):
    """Raises while building its only candidate, on every stalled program."""

    name = "always_declines"
    asked = 0

    def candidates(self, state):
        AlwaysDeclines.asked += 1
        if state.stalled():
            raise InversionError("always_declines: this block is not of my kind")
        yield  # pragma: no cover


def _steps(inv):
    """The plan's steps, without the variable numbers (which differ between two traces)."""
    return re.sub(r"v\d+", "v", inv.describe())


def _with(strategy, before, build):
    registered = register_strategy(strategy, before=before)
    try:
        return build()
    finally:
        unregister_strategy(registered)


def _check_roots_inverse(inv):
    assert "roots of t² − s t + p" in inv.describe()
    assert set(inv.theta_spec) == {"larger_first"}  # the declined candidate left no θ behind
    preimages = {tuple(np.round([float(v) for v in inv((4.0, 3.0), {"larger_first": jnp.asarray(k)})], 12))
                 for k in (0, 1)}
    assert preimages == {(3.0, 1.0), (1.0, 3.0)}  # both preimages of (a + b, a·b) = (4, 3)


def test_a_step_that_cannot_be_built_declines_and_the_next_candidate_is_taken():
    inv = _with(StepFailsFirst(), "linear", lambda: ppinv.inverse(sum_and_product, 1.0, 3.0))
    _check_roots_inverse(inv)
    _with(StepFailsFirst(), "linear",
          lambda: check_inverse(sum_and_product, 1.0, 3.0, n_points=3, dense_points=2))


def test_a_candidate_the_strategy_refuses_to_build_is_skipped_for_its_next():
    inv = _with(IteratorRefusesFirst(), "linear", lambda: ppinv.inverse(sum_and_product, 1.0, 3.0))
    _check_roots_inverse(inv)


def test_a_decline_lets_another_strategy_solve_the_block():
    """Declining before ``linear`` changes nothing: the linear block is the schedule found without it."""

    def f(a, b):
        return a + b, a - 2.0 * b

    plain = ppinv.inverse(f, 1.0, 2.0)
    AlwaysDeclines.asked = 0
    inv = _with(AlwaysDeclines(), "linear", lambda: ppinv.inverse(f, 1.0, 2.0))
    assert AlwaysDeclines.asked >= 1
    assert _steps(inv) == _steps(plain) and inv.n_theta == 0
    a, b = inv((3.0, -1.0))
    np.testing.assert_allclose([float(a), float(b)], [5.0 / 3.0, 4.0 / 3.0], rtol=1e-12)


def test_a_decline_before_any_strategy_moves_leaves_the_search_to_free_a_variable():
    def f(a, b):  # stalls once: one variable is freed, the other solved by division
        return a * b + a

    plain = ppinv.inverse(f, 1.0, 2.0)
    inv = _with(AlwaysDeclines(), "rule", lambda: ppinv.inverse(f, 1.0, 2.0))
    assert _steps(inv) == _steps(plain) and inv.n_theta == 1
    _with(AlwaysDeclines(), "rule", lambda: check_inverse(f, 1.0, 2.0, n_points=3, dense_points=2))


def test_when_nothing_else_works_the_refusal_names_the_relations_and_the_decline():
    err = _with(AlwaysDeclines(), "linear", lambda: pytest.raises(InversionError, ppinv.inverse, sum_and_product,
                                                                 1.0, 3.0))
    message = str(err.value)
    assert "add" in message and "mul" in message  # the coupled relations are named
    assert "always_declines" in message and "not of my kind" in message


def test_a_program_that_cannot_be_inverted_keeps_its_specific_refusal():
    """The unknown cancels out: ppinv's own reason, whatever the user's strategy declined."""

    def f(a):
        return (a - a) * 2 * a + 1.0

    err = _with(AlwaysDeclines(), "rule", lambda: pytest.raises(UnderdeterminedError, ppinv.inverse, f, 0.5))
    assert "does not depend on a" in str(err.value) and "cancels out" in str(err.value)


def test_ppinv_s_own_reason_leads_the_refusal_when_the_search_goes_on_and_fails():
    """A rank-deficient linear block is declined by the linear strategy; the search then stalls
    (nothing else solves it): the refusal is the rank deficiency, naming the relations."""

    def f(a, b):
        return a + b, 2.0 * a + 2.0 * b

    err = _with(AlwaysDeclines(), "linear", lambda: pytest.raises(InversionError, ppinv.inverse, f, 1.0, 2.0))
    message = str(err.value)
    assert message.startswith("rank-deficient linear block") and message.count("= add(") == 2
    assert "always_declines" in message  # the user's strategy's decline is mentioned, not the headline
