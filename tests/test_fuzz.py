"""Fuzzing the overlay with random programs (ppinv.strategies).

Property: ppinv either refuses a program with an InversionError that explains
itself, or its inverse is sound (at the PGF's θ and at perturbed θ), complete
through the PGF, has the right log|det|, derivatives that agree with finite
differences, and the same values under jax.vmap; any other exception is a
failure. The same programs as NumPyro models, conditioned with ppinv.condition
on outputs simulated inside the supports, must be refused or sound, start at
the simulating draw, and have potential-energy gradients that agree with
finite differences. The default tier draws a few dozen programs (about a
minute of CPU: every program is traced and compiled several times); the slow
tier (``-m slow``) draws thousands, counts outcomes by class instead of
stopping at the first failure, and writes one JSON line per program to the
file named by ``PPINV_FUZZ_LOG`` when that is set (``PPINV_FUZZ_EXAMPLES`` and
``PPINV_FUZZ_MODEL_EXAMPLES`` set how many).
"""

import collections
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ppinv.strategies import RandomProgram, check_model_program, check_program, programs, shrink

# hypothesis's report of a failing example imports a module that warns on import; keep the report readable
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

OUTCOMES = collections.Counter()
# no shrinking in the default tier: a failing program prints as runnable source already
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None,
                 phases=[Phase.explicit, Phase.generate])


@settings(max_examples=8, **_SETTINGS)
@given(programs(max_ops=6), st.integers(0, 10_000))
def test_random_programs(prog, seed):
    OUTCOMES[check_program(prog, seed).status] += 1


@settings(max_examples=8, **_SETTINGS)
@given(programs(max_inputs=2, max_ops=4, arrays=False, control_flow=False))
def test_small_scalar_programs_mostly_invert(prog):
    OUTCOMES["scalar:" + check_program(prog).status] += 1


@settings(max_examples=2, **_SETTINGS)
@given(programs(max_inputs=3, max_ops=5), st.integers(0, 10_000))
def test_random_programs_as_models(prog, seed):
    """The same programs as NumPyro models conditioned with ppinv.condition (constants of kind
    ``argument`` passed as model arguments): sound, valid start, potential gradient."""
    OUTCOMES["model:" + check_model_program(prog, seed).status] += 1


def test_fuzz_pass_rate_reported():
    """Runs after the property tests in this module: most programs must invert."""
    inverted = OUTCOMES["inverted"] + OUTCOMES["scalar:inverted"] + OUTCOMES["model:inverted"]
    total = sum(OUTCOMES.values())
    if total == 0:
        pytest.skip("property tests did not run")
    print(f"\nfuzz outcomes: {dict(OUTCOMES)}")
    assert inverted / total > 0.5


def test_ill_conditioned_points_are_not_counted_as_failures():
    """Found by a long fuzz run: tanh(exp(2.8)) = 1 − 3e-14 cannot be inverted to 1e-7 by
    any method (and tanh(exp(3.2)) rounds to exactly 1.0, outside tanh's range); such
    points test floating point, not the inverse, and are skipped. The program still inverts."""
    ops = [("const", "div", 0, 0), ("unary", "neg", 1), ("cond", 1, 2), ("binary", "sub", 0, 0),
           ("cond", 0, 4), ("cond", 4, 4), ("cond", 1, 2), ("unary", "neg", 2), ("binary", "sub", 5, 1),
           ("binary", "mul", 8, 6), ("unary", "tanh", 7), ("const", "add", 6, 1)]
    prog = RandomProgram(ops, 1, 0, [11], consts=(("float", -0.663), ("float", 0.663)))
    assert all(check_program(prog, seed).status == "inverted" for seed in range(2))


def test_program_source_is_its_own_reproducer():
    """``prog.source`` runs as written and builds the same inverse the fuzzer checked."""
    prog = RandomProgram(
        [("const", "rmul", 0, 0), ("cond_closure", 2, 1, 2), ("vecmat", 3, 1, [[1.0, 0.5], [0.0, 2.0], [1.5, -1.0]],
                                                               None), ("scan_weak", 1)],
        2, 3, [5], supports=(("less_than", 0.0), ("interval", -3.0, -1.0)), consts=(("captured_vector", (1.0, 2.0, 3.0)),),
    )
    namespace = {}
    exec(prog.source, namespace)
    x = (-jnp.array([0.5, 1.0, 2.0]), jnp.array([-2.0, -1.5, -2.5]))
    for a, b in zip(namespace["f"](*x), prog.forward(*x)):
        np.testing.assert_array_equal(a, b)
    assert namespace["inv"].n_theta == 3  # v0 free, v1 solved through the scan
    assert "C0 = jnp.asarray([1.0, 2.0, 3.0])" in prog.source and "constraints.less_than(0.0)" in prog.source


def test_shrink_keeps_the_failure_and_drops_the_rest():
    ops = [("unary", "exp", 0), ("unary", "sin", 1), ("binary", "add", 2, 1), ("const", "mul", 3, 0),
           ("unary", "erfc", 4)]
    prog = RandomProgram(ops, 2, 0, [5, 6], supports=(("positive",), ("real",)), consts=(("float", 2.0),))
    small = shrink(prog, lambda p: any(op[:2] == ("unary", "erfc") for op in p.ops))
    assert [op[:2] for op in small.ops] == [("unary", "erfc")] and small.n_inputs == 1
    assert small.supports == (("real",),)
    small.forward(*small.example_args)  # still a valid program


def test_crashes_and_wrong_answers_are_failures_not_refusals():
    """The oracle's own classes: a bad derivative of a user rule is a 'gradient' failure."""
    import jax
    from jax import lax

    import ppinv

    def wrong_grad_exp(pattern):
        # exp's inverse with a derivative that is off by 1%: values exact, jax.grad wrong
        @jax.custom_jvp
        def log(z):
            return jnp.log(z)

        log.defjvp(lambda primals, tangents: (jnp.log(primals[0]), 1.01 * tangents[0] / primals[0]))
        return ppinv.rules.UnaryRule(log, lambda z, x: -jnp.log(z), domain=lambda z: z > 0)(pattern)

    prog = RandomProgram([("unary", "exp", 0)], 1, 0, [1])
    with ppinv.overlay({lax.exp_p: wrong_grad_exp}):
        outcome = check_program(prog, raise_on_failure=False)
    assert outcome.status == "failed" and outcome.failure == "gradient", outcome


# -- the long run: counts by class --------------------------------------------------------------

LONG = collections.Counter()
LONG_FAILURES = []


def _record(kind, prog, seed, outcome):
    key = outcome.status if outcome.status != "failed" else "failed: " + outcome.failure
    LONG[f"{kind}: {key}"] += 1
    if outcome.status == "failed":
        LONG_FAILURES.append((outcome.failure, prog))
    path = os.environ.get("PPINV_FUZZ_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"kind": kind, "status": outcome.status, "failure": outcome.failure, "seed": seed,
                                 "detail": outcome.detail[:2000], "source": prog.source,
                                 "program": [repr(prog.ops), prog.n_inputs, prog.size, prog.outputs,
                                             repr(prog.supports), repr(prog.consts)]}) + "\n")


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("PPINV_FUZZ_EXAMPLES", "2000")), **_SETTINGS)
@given(programs(max_inputs=4, max_ops=12), st.integers(0, 10_000))
def test_random_programs_many(prog, seed):
    _record("inverse", prog, seed, check_program(prog, seed, raise_on_failure=False))


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("PPINV_FUZZ_MODEL_EXAMPLES", "300")), **_SETTINGS)
@given(programs(max_inputs=3, max_ops=8), st.integers(0, 10_000))
def test_random_models_many(prog, seed):
    _record("model", prog, seed, check_model_program(prog, seed, raise_on_failure=False))


@pytest.mark.slow
def test_long_run_has_no_failures():
    if not LONG:
        pytest.skip("the long run did not run")
    print(f"\nlong fuzz outcomes: {dict(LONG)}")
    assert not LONG_FAILURES, "\n\n".join(f"{cls}:\n{prog.source}" for cls, prog in LONG_FAILURES[:5])
