"""The degree of a polynomial block is the true one, not the structural bound.

``(a − a)·2a`` looks quadratic, but its leading coefficient is zero for every
value: the block must solve at the degree whose coefficients are not
identically zero (no spurious root θ), keep a real but tiny leading
coefficient, and refuse a relation from which the unknown cancels out.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import ppinv
from ppinv.errors import InversionError, UnderdeterminedError
from ppinv.strategies import RandomProgram, check_program
from ppinv.testing import check_inverse


def _discrete(inv):
    return [n for n, s in inv.theta_spec.items() if s.discrete]


def _poly_description(inv):
    return " ".join(s.block.description for s in inv.schedule.steps if hasattr(s, "block"))


def test_identically_zero_leading_term_is_solved_at_degree_one():
    f = lambda a: (a - a) * 2 * a + 3 * a - 1.0  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    assert _discrete(inv) == []  # one root: no θ choosing between a real and a spurious one
    assert "degree-1" in _poly_description(inv)
    (a,) = inv(2.0, {})
    np.testing.assert_allclose(a, 1.0, rtol=1e-14)
    check_inverse(f, 0.5, inv=inv, n_points=4)


def test_leading_coefficient_cancelling_through_known_operands():
    """(k·a − a·k)·a: zero for every value of the captured k, found by evaluating the
    coefficients at random values of the block's known inputs."""
    k = jnp.asarray(1.7)

    def f(a, b):
        return (k * a - a * b) * a + b * a  # b is freed; then (k − b)·a² + b·a is a genuine quadratic in a

    inv = ppinv.inverse(f, 0.5, 1.2, free=["b"])
    assert len(_discrete(inv)) == 1
    g = lambda a: (k * a - a * k) * a + k * a  # noqa: E731
    inv = ppinv.inverse(g, 0.5)
    assert _discrete(inv) == []
    check_inverse(g, 0.5, inv=inv, n_points=4)


def test_rounding_level_coefficient_is_zero():
    """(0.1 + 0.2 − 0.3)·a² is 5.6e-17·a² in floating point, within its rounding bound of zero:
    solving it as a quadratic would add a root near −1.8e16 that is not a preimage."""
    f = lambda a: (0.1 * a + 0.2 * a - 0.3 * a) * a + a  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    assert _discrete(inv) == []
    check_inverse(f, 0.5, inv=inv, n_points=4)


def test_tiny_but_real_leading_coefficient_keeps_both_roots():
    f = lambda a: 1e-20 * a * a + a  # noqa: E731
    inv = ppinv.inverse(f, 0.5)
    (name,) = _discrete(inv)
    y = 1.0
    far = inv(y, {name: 1})[0]  # the second preimage, near −1e20, is reached
    assert float(far) < -1e19
    assert bool(inv.in_domain(y, {name: 1}))


@pytest.mark.parametrize(
    "f",
    [lambda a: (a - a) * 2 * a + 1.0, lambda a: a * a - a * a + 0.5 * (a - a)],
    ids=["zero_times_term", "difference_of_equal_terms"],
)
def test_unknown_that_cancels_out_is_refused(f):
    with pytest.raises(UnderdeterminedError, match="cancels out") as err:
        ppinv.inverse(f, 0.5)
    assert "does not depend on a" in str(err.value)


def test_flat_branch_of_a_kink_is_refused():
    """x − |x| + 0·x is 0 on x ≥ 0: a flat piece with posterior mass, never dropped."""
    with pytest.raises(InversionError, match="flat piece"):
        ppinv.inverse(lambda x: 2 * x - jnp.abs(x) - x, 0.5)


def _fuzz_program(outputs):
    # v0 = a; v1 = a − a; v2 = 2·a; v3 = (a − a)·(2a); v4 = v3 + a
    ops = [("binary", "sub", 0, 0), ("const", "mul", 0, 0), ("binary", "mul", 1, 2), ("binary", "add", 3, 0)]
    return RandomProgram(ops, 1, 0, outputs, consts=(("float", 2.0),))


def test_fuzz_program_seed_513():
    """A random program of test_fuzz.py's kind: (a − a)·2a + a inverts at degree 1 and passes the
    fuzzer's checks; (a − a)·2a alone is refused, not inverted to a root that is never valid."""
    prog = _fuzz_program([4])
    assert check_program(prog, 513).status == "inverted"
    assert _discrete(ppinv.inverse(prog.fn, *prog.example_args, support=prog.support)) == []
    assert check_program(_fuzz_program([3]), 513).status == "refused"
