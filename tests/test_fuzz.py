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
