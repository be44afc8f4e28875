"""The limits listed in experiments/REPORT.md §6: each is refused with an error that says why."""

import jax.numpy as jnp
import pytest
from numpyro.distributions import constraints

import ppinv
from models import arm


def test_two_coupled_nonlinear_equations():
    """(a·b, a + b): a polynomial system, not one univariate solve."""
    with pytest.raises(ppinv.UnderdeterminedError, match="coupled") as err:
        ppinv.inverse(lambda a, b: (a * b, a + b), 1.0, 1.0)
    assert "mul" in str(err.value) and "add" in str(err.value)


def test_the_same_system_rewritten_is_inverted():
    """... while a + b = s, a·(s − a) = p, with s known, is a quadratic in a."""
    inv = ppinv.inverse(lambda a: a * (3.0 - a), 1.0)
    (a,) = inv(2.0, {"poly_root": 1})
    assert abs(float(a * (3.0 - a)) - 2.0) < 1e-12


def test_monotone_but_not_provably_so():
    """x/(1 + x) + atan x is increasing, but interval bounds on its derivative straddle 0."""
    f = lambda x: x / (1 + x) + jnp.arctan(x)  # noqa: E731
    with pytest.raises(ppinv.UnderdeterminedError, match="strictly monotone"):
        ppinv.inverse(f, 1.0, support=constraints.positive)
    # the same function written so that x appears once per term is proved monotone
    g = lambda x: 1 - 1 / (1 + x) + jnp.arctan(x)  # noqa: E731
    (x,) = ppinv.inverse(g, 1.0, support=constraints.positive)(float(g(2.0)), {})
    assert abs(float(x) - 2.0) < 1e-12


def test_coupled_angle_and_radius_without_a_closed_form():
    """An angle that is also a length (a spiral): two coupled nonlinear equations, named in the error."""
    with pytest.raises(ppinv.UnderdeterminedError, match="coupled"):
        ppinv.inverse(lambda a, b: (a * jnp.cos(b) + b, a * jnp.sin(b) + a), 1.0, 0.5)


def test_dependent_observations():
    with pytest.raises(ppinv.OverdeterminedError, match="over-determined"):
        ppinv.inverse(lambda a, b: (a + b, 2.0 * (a + b)), 1.0, 1.0)
