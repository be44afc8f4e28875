"""The prototype's (ParametricInversion.jl) test programs, in Python form."""

import jax.numpy as jnp
import pytest

import ppinv
from ppinv.testing import check_inverse


def xyz_1(x, y, z):
    return x * y + z


def xyz_2(x, y, z):
    return z + x * y


def xyz_3(x, y, z):
    return y * x + z


def xyz_4(x, y, z):
    return z + y * x


def g(x):
    return 2 * x


def f_abc(a, b, c):
    return g((a + b + 3) * c)


def f4(a):
    return a + a


def fdupl(a, b):
    return a + a / b


def multiple_variable_use(x, y):
    a = x + y
    b = a + a
    c = a * a
    d = c + b
    e = y * a
    return e + d


PROGRAMS = [
    (xyz_1, 3, 2),
    (xyz_2, 3, 2),
    (xyz_3, 3, 2),
    (xyz_4, 3, 2),
    (g, 1, 0),
    (f_abc, 3, 2),
    (f4, 1, 0),
    (fdupl, 2, 1),
    (multiple_variable_use, 2, 1),
]


@pytest.mark.parametrize("f,n_args,n_theta", PROGRAMS, ids=[p[0].__name__ for p in PROGRAMS])
def test_prototype_program(f, n_args, n_theta):
    inv = ppinv.inverse(f, *([1.0] * n_args))
    assert inv.n_theta == n_theta  # dim X - dim Y
    report = check_inverse(f, *([1.0] * n_args), inv=inv, n_points=25, rtol=1e-9, log_det_atol=1e-9)
    assert report.n_in_domain == 25


def test_multiple_variable_use_frees_the_shared_intermediate():
    """DESIGN §3: `a` is chosen from θ, b, c, d forward, then e, y, x solved."""
    inv = ppinv.inverse(multiple_variable_use, 1.0, 1.0)
    (name,) = inv.theta_spec
    theta = inv.pgf(0.3, -1.7)
    assert jnp.allclose(theta[name], 0.3 - 1.7)  # θ is a = x + y
    x, y = inv(multiple_variable_use(0.3, -1.7), theta)
    assert jnp.allclose(jnp.array([x, y]), jnp.array([0.3, -1.7]), rtol=1e-12)


def test_constrained_argument_is_freed_first():
    """For a·b + c with b > 0: free a and b (b carries its support), solve c."""
    from numpyro.distributions import constraints

    inv = ppinv.inverse(lambda a, b, c: a * b + c, 1.0, 1.0, 1.0, support=(None, constraints.positive, None))
    assert set(inv.theta_spec) == {"a", "b"}
    assert inv.theta_support["b"] is constraints.positive
