"""A ``custom_vjp`` call in a program being inverted keeps its declared derivative.

Evaluated forward (all its inputs known, e.g. freed from θ), the call is bound whole, so
``jax.grad`` of the inverse goes through its backward rule: a forward that is a
``while_loop`` (``odeint``, a Newton iteration) has no reverse derivative of its own.
Solved backwards, its body is inverted like any program, and a ``while_loop`` there is refused.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from numpyro.distributions import constraints

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse


@jax.custom_vjp
def newton_sqrt(a):
    """√a by Newton's iteration in a while_loop (no reverse-mode derivative of its own)."""

    def body(state):
        r, _ = state
        new = 0.5 * (r + a / r)
        return new, jnp.abs(new - r)

    r, _ = lax.while_loop(lambda s: s[1] > 1e-15 * s[0], body, (jnp.maximum(a, 1.0), jnp.inf))
    return r


def _sqrt_fwd(a):
    r = newton_sqrt(a)
    return r, r


def _sqrt_bwd(r, g):
    return (g / (2.0 * r),)


newton_sqrt.defvjp(_sqrt_fwd, _sqrt_bwd)


def offset_by_root(a, n):
    """``y = √a + n``: ``a`` (positive) is freed from θ, the call runs forward, ``n = y − √a``."""
    return newton_sqrt(a) + n


def test_forward_call_keeps_its_reverse_rule():
    inv = ppinv.inverse(offset_by_root, 2.0, 0.5, support=[constraints.positive, constraints.real])
    assert inv.n_theta == 1
    y = offset_by_root(2.0, 0.5)
    theta = inv.pgf(2.0, 0.5)
    a, n = inv(y, theta)
    assert np.isclose(float(a), 2.0) and np.isclose(float(n), 0.5)  # PGF round trip
    assert np.isclose(float(offset_by_root(a, n)), float(y))  # soundness

    (leaf,) = jax.tree_util.tree_leaves(theta)

    def n_of(t):
        return inv(y, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(theta), [t]))[1]

    grad = jax.grad(n_of)(leaf)  # a reverse derivative through the while_loop's declared rule
    h = 1e-6
    central = (n_of(leaf + h) - n_of(leaf - h)) / (2 * h)
    assert np.isclose(float(grad), float(central), rtol=1e-6)
    assert np.isclose(float(jax.jacfwd(n_of)(leaf)), float(grad), rtol=1e-12)  # forward mode agrees


def test_forward_call_checked_in_full():
    check_inverse(offset_by_root, 2.0, 0.5, support=[constraints.positive, constraints.real], n_points=3,
                  rtol=1e-9)


@jax.custom_vjp
def affine(x):
    return 3.0 * x + 1.0


affine.defvjp(lambda x: (affine(x), None), lambda _, g: (3.0 * g,))


def test_call_on_the_solved_path_inverts_its_body():
    inv = ppinv.inverse(lambda x: jnp.exp(affine(x)), 0.3)
    (x,) = inv(jnp.asarray(2.0))
    assert np.isclose(float(x), (np.log(2.0) - 1.0) / 3.0)
    ld = float(inv.log_abs_det_jacobian(jnp.asarray(2.0)))
    assert np.isclose(ld, -np.log(3.0) - np.log(2.0))  # ∂x/∂y = 1 / (3y)
    check_inverse(lambda x: jnp.exp(affine(x)), 0.3, n_points=3, rtol=1e-9)


def test_call_with_a_while_loop_on_the_solved_path_is_refused():
    with pytest.raises(InversionError, match="while_loop") as err:
        ppinv.inverse(lambda a: newton_sqrt(a) * 2.0, 2.0, support=constraints.positive)
    assert "custom_vjp" in str(err.value)
