"""Which error ppinv raises, and what an eager ``DomainError`` says.

Build time: ``OverdeterminedError`` when the observations constrain a value
more than once, ``UnderdeterminedError`` when the solve needs more θ than
``dim X − dim Y`` or leaves a variable undetermined (see ``ppinv/errors.py``).
"""

import doctest
import inspect
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from numpyro.distributions import constraints

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


# --- an eager DomainError names the relation and the line ------------------------------
# The programs below are written the way users write them: helpers with one relation per line.
def _where(fn, text):
    """``file:line:`` of the line of ``fn`` containing ``text`` (JAX's summary adds the column)."""
    lines, start = inspect.getsourcelines(fn)
    offset = next(i for i, line in enumerate(lines) if text in line)
    return re.escape(f"{os.path.basename(__file__)}:{start + offset}:")


def _radius(x):
    r2 = 3.0 * x
    return jnp.sqrt(r2)


def _half_angle(s):
    angle = jnp.arcsin(s)
    return 2.0 * angle


def _shifted_log(a, b):
    t = b - 1.0
    return a + jnp.log(t)


def _total(x):
    return jnp.sum(x)


def _exp_then_arcsin(x):
    u = jnp.exp(x)
    return jnp.arcsin(u)


def _affine(x):
    return 2.0 * x + 1.0


def _max_plus_a(a, b):
    return jnp.maximum(a, b) + a


def _iterated_exp(x):
    return lax.scan(lambda c, _: (jnp.exp(c), None), x, None, length=3)[0]


def test_sqrt_of_a_negative_observation_names_sqrt_and_its_line():
    inv = ppinv.inverse(_radius, 1.0)
    with pytest.raises(ppinv.DomainError, match=r"^sqrt at .*" + _where(_radius, "jnp.sqrt")) as err:
        inv(-4.0)
    msg = str(err.value)
    assert "sqrt(v" in msg and "= -4.0 has no solution" in msg
    assert "y is outside the range of _radius" in msg and "no preimage" in msg


def test_arcsin_beyond_its_range_names_asin_and_the_value():
    inv = ppinv.inverse(_half_angle, 0.5)
    with pytest.raises(ppinv.DomainError, match=r"^asin at .*" + _where(_half_angle, "jnp.arcsin")) as err:
        inv(4.0)  # asin(s) = 2 > π/2
    assert "asin(s) = 2.0 has no solution for s" in str(err.value)


def test_log_of_a_negative_evaluated_forward_names_log_and_the_value():
    """b from θ, then log(b − 1) forward: at b = 0.7 the log is of −0.3."""
    inv = ppinv.inverse(_shifted_log, 1.0, 2.0, free="b")
    with pytest.raises(ppinv.DomainError, match=r"^log at .*" + _where(_shifted_log, "jnp.log")) as err:
        inv(1.0, {"b": 0.7})
    msg = str(err.value)
    assert "log(-0.3) = nan" in msg and "computed from y and θ" in msg
    a, b = inv(1.0, {"b": 2.5})  # inside the domain nothing changes
    np.testing.assert_allclose(_shifted_log(a, b), 1.0, rtol=1e-12)


def test_log_of_a_negative_evaluated_forward_is_outside_the_domain_under_jit():
    inv = ppinv.inverse(_shifted_log, 1.0, 2.0, free="b")
    assert not bool(jax.jit(inv.in_domain)(1.0, {"b": 0.7}))


def test_sum_of_positives_given_a_negative_total_names_the_sum():
    inv = ppinv.inverse(_total, jnp.ones(3), support=constraints.positive)
    theta = inv.pgf(jnp.array([1.0, 2.0, 3.0]))
    with pytest.raises(ppinv.DomainError, match=r"^reduce_sum at .*" + _where(_total, "jnp.sum")) as err:
        inv(-1.0, theta)
    assert "reduce_sum(x) = -1.0 has no solution for x" in str(err.value)


def test_two_step_program_names_only_the_relation_that_fails():
    """arcsin(exp(x)) = -0.5: the arcsine is solved (u = sin(-0.5)), then exp(x) = u < 0 fails."""
    inv = ppinv.inverse(_exp_then_arcsin, -1.0)
    with pytest.raises(ppinv.DomainError, match=r"^exp at .*" + _where(_exp_then_arcsin, "jnp.exp")) as err:
        inv(-0.5)
    msg = str(err.value)
    assert f"= {np.sin(-0.5):.6g} has no solution for x" in msg
    assert not re.search(_where(_exp_then_arcsin, "jnp.arcsin"), msg)


def test_solved_value_outside_its_support_names_the_argument_and_its_solver():
    inv = ppinv.inverse(_affine, 0.5, support=constraints.unit_interval)
    with pytest.raises(ppinv.DomainError, match=r"argument 'x' is 2\.0, outside its support UnitInterval") as err:
        inv(5.0)
    assert re.search(r"solved by mul at .*" + _where(_affine, "2.0 * x"), str(err.value))


def test_theta_outside_its_support_names_theta():
    inv = ppinv.inverse(lambda a, b: a + b, 1.0, 1.0, support={"a": constraints.positive})
    assert list(inv.theta_spec) == ["a"]
    with pytest.raises(ppinv.DomainError, match=r"argument 'a' is θ\['a'\] = -1\.0, outside its support Positive"):
        inv(1.0, {"a": -1.0})


def test_union_of_schedules_names_the_piece_or_the_relation():
    inv = ppinv.inverse(_max_plus_a, 1.0, 1.0)
    piece = next(n for n, s in inv.theta_spec.items() if s.discrete)
    value = next(n for n, s in inv.theta_spec.items() if not s.discrete)
    # b > a side: a = θ = 3, then max(3, b) = 4 − 3 = 1 has no solution
    with pytest.raises(ppinv.DomainError, match=r"^max at .*" + _where(_max_plus_a, "jnp.maximum")):
        inv(4.0, {value: 3.0, piece: 0})
    # flat side: a = 2, b = θ = 3 > a is off the piece b <= a
    with pytest.raises(ppinv.DomainError, match=r"flat_piece'\] = 1 picks the schedule .*flat piece .* of max at .*"
                       + _where(_max_plus_a, "jnp.maximum")):
        inv(4.0, {value: 3.0, piece: 1})


def test_a_loop_that_fails_inside_is_named_at_its_call_site():
    inv = ppinv.inverse(_iterated_exp, 0.5)
    with pytest.raises(ppinv.DomainError, match=r"^scan at .*" + _where(_iterated_exp, "lax.scan")):
        inv(1.0)  # exp(exp(exp(x))) > 1


def test_the_compiled_path_is_untouched():
    """Under jit nothing is raised and nothing is re-run: NaN values, −∞ log|det|, one trace."""
    inv = ppinv.inverse(_radius, 1.0)
    x = jax.jit(inv)(-4.0, {})
    assert bool(jnp.isnan(x[0]))
    assert float(inv.log_abs_det_jacobian(-4.0)) == -np.inf
    (xs,), ld = inv.with_log_det(-4.0)
    assert bool(jnp.isnan(xs)) and float(ld) == -np.inf
    traces = inv.trace_count
    with pytest.raises(ppinv.DomainError):
        inv(-4.0)
    assert inv.trace_count == traces  # the diagnosis runs eagerly, outside the compiled inverse


def test_error_docstring_example_runs():
    result = doctest.testmod(ppinv.errors, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _exp_if_positive(x):
    return lax.cond(x > 0, jnp.exp, lambda v: v, x)


def test_a_branch_index_the_values_contradict_names_the_check_and_theta():
    """θ picks the cond's branch; y = 2 solved on the identity branch gives x = 2 > 0, the other branch."""
    inv = ppinv.inverse(_exp_if_positive, 0.5)
    (branch,) = inv.theta_spec
    with pytest.raises(ppinv.DomainError, match=rf"θ\['{branch}'\] = 0, but the recovered inputs give 1") as err:
        inv(2.0, {branch: 0})
    assert re.search(_where(_exp_if_positive, "lax.cond"), str(err.value))
    np.testing.assert_allclose(inv(2.0, {branch: 1})[0], np.log(2.0))


def test_a_non_finite_theta_is_named():
    inv = ppinv.inverse(lambda a, b: a + b, 1.0, 1.0)
    with pytest.raises(ppinv.DomainError, match=r"θ\['a'\] = nan is not a finite value"):
        inv(1.0, {"a": np.nan})
