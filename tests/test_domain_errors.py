"""Which error ppinv raises, and what an eager ``DomainError`` says.

Build time: ``OverdeterminedError`` when the observations constrain a value
more than once, ``UnderdeterminedError`` when the solve needs more θ than
``dim X − dim Y`` or leaves a variable undetermined (see ``ppinv/errors.py``).
"""

import jax.numpy as jnp
import pytest

import ppinv


# --- over- and under-determined -------------------------------------------------------
def test_a_value_and_its_double_observed_is_overdetermined():
    """f(a) = (a, 2a): two observed dimensions, one unknown."""
    with pytest.raises(ppinv.OverdeterminedError, match="1 unknown input dimensions but 2 observed"):
        ppinv.inverse(lambda a: (a, 2.0 * a), 1.0)


def test_an_observation_that_is_a_function_of_another_is_overdetermined():
    """(a + b, 2·(a + b)): as many observations as unknowns, but the second relation
    has every place known once the first is solved; the error names it."""
    with pytest.raises(ppinv.OverdeterminedError, match=r"over-determined: the relation(?s:.*)= mul\("):
        ppinv.inverse(lambda a, b: (a + b, 2.0 * (a + b)), 1.0, 1.0)


def test_more_observed_dimensions_than_unknowns_is_overdetermined():
    with pytest.raises(ppinv.OverdeterminedError, match="2 unknown input dimensions but 3 observed"):
        ppinv.inverse(lambda a, b: jnp.stack([a + b, a - b, a * b]), 1.0, 1.0)


def test_the_same_output_returned_twice_is_overdetermined():
    def twice(a, b):
        s = a + b
        return s, s

    with pytest.raises(ppinv.OverdeterminedError, match="same variable as an earlier output"):
        ppinv.inverse(twice, 1.0, 1.0)


def test_freeing_more_than_the_spare_dimensions_is_underdetermined():
    """a + b + c observed leaves 2 θ dimensions; freeing three inputs needs 3."""
    with pytest.raises(ppinv.UnderdeterminedError, match=r"cannot make c a free parameter(?s:.*)only 0"):
        ppinv.inverse(lambda a, b, c: a + b + c, 1.0, 1.0, 1.0, free=["a", "b", "c"])


def test_coupled_nonlinear_relations_are_underdetermined():
    """(a·b, a + b) both observed: a polynomial system no single solve handles."""
    with pytest.raises(ppinv.UnderdeterminedError, match="cannot reorient"):
        ppinv.inverse(lambda a, b: (a * b, a + b), 1.0, 2.0)


def test_an_unknown_that_cancels_out_is_underdetermined():
    with pytest.raises(ppinv.UnderdeterminedError, match="cancels out"):
        ppinv.inverse(lambda a: (a * a + 1.0) - a * a + 0.0 * a, 1.0)
