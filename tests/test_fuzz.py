"""Fuzzing the overlay with random programs (ppinv.strategies).

Property: ppinv either refuses a program with a clear InversionError, or its
inverse is sound, complete through the PGF, and has the right log|det|. A few
hundred programs run by default (about 2 minutes on 2 cores: every program is
traced and compiled several times); thousands in the slow tier.
"""

import collections

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppinv.strategies import check_program, programs

OUTCOMES = collections.Counter()
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


@settings(max_examples=120, **_SETTINGS)
@given(programs(), st.integers(0, 10_000))
def test_random_programs(prog, seed):
    OUTCOMES[check_program(prog, seed).status] += 1


@settings(max_examples=50, **_SETTINGS)
@given(programs(max_inputs=2, max_ops=4, arrays=False, control_flow=False))
def test_small_scalar_programs_mostly_invert(prog):
    OUTCOMES["scalar:" + check_program(prog).status] += 1


def test_ill_conditioned_points_are_not_counted_as_failures():
    """Found by the long fuzz run: tanh(exp(2.8)) = 1 − 3e-14 cannot be inverted to 1e-7 by
    any method (and tanh(exp(3.2)) rounds to exactly 1.0, outside tanh's range); such
    points test floating point, not the inverse, and are skipped. The program still inverts."""
    from ppinv.strategies import RandomProgram

    ops = [("const", "div", 0, -0.663), ("unary", "neg", 1), ("cond", 1, 2), ("binary", "sub", 0, 0),
           ("cond", 0, 4), ("cond", 4, 4), ("cond", 1, 2), ("unary", "neg", 2), ("binary", "sub", 5, 1),
           ("binary", "mul", 8, 6), ("unary", "tanh", 7), ("const", "add", 6, 0.663)]
    prog = RandomProgram(ops, 1, 0, [11], [])
    assert all(check_program(prog, seed).status == "inverted" for seed in range(4))


def test_fuzz_pass_rate_reported():
    """Runs after the property tests in this module: most programs must invert."""
    inverted = OUTCOMES["inverted"] + OUTCOMES["scalar:inverted"]
    total = sum(OUTCOMES.values())
    if total == 0:
        pytest.skip("property tests did not run")
    print(f"\nfuzz outcomes: {dict(OUTCOMES)}")
    assert inverted / total > 0.6


@pytest.mark.slow
@settings(max_examples=2000, **_SETTINGS)
@given(programs(max_inputs=4, max_ops=12), st.integers(0, 10_000))
def test_random_programs_many(prog, seed):
    check_program(prog, seed)
