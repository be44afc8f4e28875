"""A ``where`` whose predicate moves with θ is a piecewise map, never a linear solve that
loses a case (issue 9, found by fuzzing ``cond``/``where`` programs).

``jnp.where(b > 0, b, a)`` with ``a`` and ``b`` unknown: each value of the predicate is
a piece of the preimage (``b = y`` with ``a`` free, or ``a = y`` with ``b ≤ 0`` free). A
linear solve of the select, with the predicate taken from θ, has no coefficient for the
unchosen case on one of the pieces and drops it. ppinv frees the unchosen cases instead
(the select rule), inverts each piece (the piecewise mechanism), or solves a linear block
through the select only when it is square and of full rank on every piece.

Each program is checked on both sides of its predicate: soundness, the PGF round trip,
log|det| against the dense Jacobian and derivatives against central differences
(``ppinv.testing.check_inverse``); posteriors against quadrature.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from numpyro.distributions import constraints
from scipy import stats

import ppinv
from ppinv._block import KnownStructure, LinearBlock, PieceRankError, is_linear
from ppinv._ir import Eqn, V
from ppinv.testing import check_inverse

# name -> (f, example args, points on every side of every predicate, predicates per point)
_SCALAR = {
    "where(b > 0, b, a)": (
        lambda a, b: jnp.where(b > 0, b, a),
        lambda a, b: b > 0,
        [(0.3, 0.7), (0.3, -0.7), (-1.2, 0.4), (2.0, -0.5), (-0.4, -1.1)],
    ),
    "where(a > b, a*b, a+b)": (
        lambda a, b: jnp.where(a > b, a * b, a + b),
        lambda a, b: a > b,
        [(0.3, 0.7), (0.3, -0.7), (-1.2, 0.4), (2.0, -0.5), (1.5, 1.2)],
    ),
    "where(a + b > 0, a, b)": (
        lambda a, b: jnp.where(a + b > 0, a, b),
        lambda a, b: a + b > 0,
        [(0.3, 0.7), (0.3, -0.7), (-1.2, 0.4), (2.0, -0.5), (-0.2, 0.9)],
    ),
    "where(a + b + c > 0, a - b, b*c)": (
        lambda a, b, c: jnp.where(a + b + c > 0, a - b, b * c),
        lambda a, b, c: a + b + c > 0,
        [(0.3, 0.7, 0.2), (-1.0, 0.4, -0.6), (0.8, -0.3, -1.5), (1.1, 0.6, -0.9)],
    ),
    "select of three cases on a": (
        lambda a, b, c: jnp.select([a < 0, a < 1], [a, b], c),
        lambda a, b, c: int(a >= 0) + int(a >= 1),
        [(-0.5, 0.7, 0.2), (0.4, -0.3, 1.2), (1.6, 0.8, -0.9), (-1.3, -0.2, 0.5)],
    ),
}


def _both_sides(pred, points):
    """The points reach every value of the predicate (else the test would not see a dropped piece)."""
    seen = {tuple(np.ravel(np.asarray(pred(*p))).astype(int)) for p in points}
    return {v for s in seen for v in s}


@pytest.fixture(scope="module")
def scalar_inverses():
    return {name: ppinv.inverse(f, *pts[0]) for name, (f, _, pts) in _SCALAR.items()}


@pytest.mark.parametrize("name", list(_SCALAR))
def test_every_piece_of_a_scalar_where_is_inverted(name, scalar_inverses):
    f, pred, points = _SCALAR[name]
    assert len(_both_sides(pred, points)) >= 2
    inv = scalar_inverses[name]
    report = check_inverse(f, *points[0], inv=inv, points=[tuple(map(jnp.asarray, p)) for p in points],
                           rtol=1e-9, log_det_atol=1e-8)
    assert report.n_in_domain == len(points)
    assert report.n_grad_checked > 0


def test_the_unchosen_case_is_free_and_the_pieces_are_checked(scalar_inverses):
    inv = scalar_inverses["where(b > 0, b, a)"]
    assert "joint linear solve" not in inv.describe()  # the select is not solved as a linear map
    f = _SCALAR["where(b > 0, b, a)"][0]
    for a, b in [(0.3, 0.7), (0.3, -0.7)]:
        theta = inv.pgf(a, b)
        # another θ on the same piece is another preimage; on the wrong piece it is outside the domain
        name = next(n for n, s in inv.theta_spec.items() if not s.discrete)
        x = inv(f(a, b), {**theta, name: theta[name] - 0.5})
        np.testing.assert_allclose(float(f(*x)), float(f(a, b)), rtol=1e-12)
        disc = next(n for n, s in inv.theta_spec.items() if s.discrete)
        flipped = {**theta, disc: 1 - theta[disc]}
        if b > 0:  # a = y = 0.7 > 0 would have to be the case where b ≤ 0: b = θ = 0.3 is not
            assert not bool(inv.in_domain(f(a, b), flipped))


def test_a_three_case_select_has_a_bounded_index(scalar_inverses):
    inv = scalar_inverses["select of three cases on a"]
    disc = [s for s in inv.theta_spec.values() if s.discrete]
    assert disc and all(isinstance(s.support, constraints.integer_interval) for s in disc)
    assert any(int(s.support.upper_bound) == 2 for s in disc)


# --- vector forms ---------------------------------------------------------------------------------
_VECTOR = {
    "where(x > 0, x, y)": (
        lambda x, y: jnp.where(x > 0, x, y),
        lambda x, y: x > 0,
        3,
    ),
    "where(x.at[1].set(y[0]) > 0, x, y)": (
        lambda x, y: jnp.where(x.at[1].set(y[0]) > 0, x, y),
        lambda x, y: x.at[1].set(y[0]) > 0,
        3,
    ),
    "where(x > 0, x.at[0].add(y[1]), y)": (
        lambda x, y: jnp.where(x > 0, x.at[0].add(y[1]), y),
        lambda x, y: x > 0,
        3,
    ),
    # a block through the select, square and of full rank on each of its 4 pieces
    "where(x.at[1].add(y[0]) + y > 0, x*y, x+y)": (
        lambda x, y: jnp.where(x.at[1].add(y[0]) + y > 0, x * y, x + y),
        lambda x, y: x.at[1].add(y[0]) + y > 0,
        2,
    ),
    "where(sum(y) > 0, x, y)": (
        lambda x, y: jnp.where(jnp.sum(y) > 0, x, y),
        lambda x, y: jnp.sum(y) > 0,
        3,
    ),
}


def _vector_points(pred, n, count=4, seed=0):
    """Points where every element's predicate takes both values somewhere."""
    rng = np.random.RandomState(seed)
    points = []
    while len(points) < count or len(_elementwise_values(pred, points)) < 2 * np.size(pred(*points[0])):
        points.append((jnp.asarray(rng.normal(size=n) * 1.3), jnp.asarray(rng.normal(size=n) * 1.3)))
        if len(points) > 40:
            break
    return points


def _elementwise_values(pred, points):
    return {(i, int(v)) for p in points for i, v in enumerate(np.ravel(np.asarray(pred(*p))))}


@pytest.mark.parametrize("name", list(_VECTOR))
def test_every_piece_of_a_vector_where_is_inverted(name):
    f, pred, n = _VECTOR[name]
    points = _vector_points(pred, n)
    assert len(_elementwise_values(pred, points)) == 2 * np.size(pred(*points[0]))  # both sides, each element
    inv = ppinv.inverse(f, jnp.ones(n), jnp.ones(n))
    report = check_inverse(f, jnp.ones(n), jnp.ones(n), inv=inv, points=points, rtol=1e-9, log_det_atol=1e-8,
                           grad_points=1)
    assert report.n_in_domain == len(points)


# --- the mechanism --------------------------------------------------------------------------------
def _select(pred, *cases):
    out = V((), np.dtype("float64"))
    return Eqn(lax.select_n_p, {}, [pred, *cases], [out], "test"), out


def test_a_select_is_linear_only_where_no_case_is_dropped():
    p, a, b = V((), np.dtype("bool")), V((), np.dtype("float64")), V((), np.dtype("float64"))
    e, _ = _select(p, a, b)
    fixed, moving = (lambda v: False), (lambda v: not v.is_const)
    assert is_linear(e, [True, False, True], fixed)  # a fixed predicate (data): a linear map of a
    assert not is_linear(e, [True, False, True], moving)  # b picked: a has no coefficient there
    assert is_linear(e, [True, False, False], moving)  # every case unknown: checked per piece
    assert not is_linear(e, [False, False, False], moving)


def test_a_block_through_a_moving_select_is_checked_on_every_piece():
    p, a, b = V((), np.dtype("bool")), V((), np.dtype("float64")), V((), np.dtype("float64"))
    structure = KnownStructure()  # nothing fixed: the predicate moves with θ
    # z = where(p, b, a) for the leaf a, b known: singular where p picks b
    e, _ = _select(p, a, b)
    with pytest.raises(PieceRankError, match="singular on the piece"):
        LinearBlock([e], [], [a], [p, b], None, "test", structure)
    # z = where(p, a + b, 2a) for the leaf a, b known: full rank on both pieces
    s = V((), np.dtype("float64"))
    add = Eqn(lax.add_p, {}, [a, b], [s], "test")
    t = V((), np.dtype("float64"))
    dbl = Eqn(lax.mul_p, {}, [a, V((), np.dtype("float64"), value=np.asarray(2.0))], [t], "test")
    e2, _ = _select(p, s, t)
    block = LinearBlock([e2], [add, dbl], [a], [p, b], None, "test", structure)
    for pv in (False, True):
        (x,), _, ok = block.solve({p: jnp.asarray(pv), b: jnp.asarray(0.5)}, [jnp.asarray(3.0)], ())
        assert bool(ok)
        np.testing.assert_allclose(float(x), 1.5 if pv else 2.5)  # 2a or a + b = 3


# --- posteriors ---------------------------------------------------------------------------------
def _piece_masses(inv, y, log_prior, lo=-12.0, hi=12.0, n=48001):
    """Mass of the posterior on each value of the discrete θ: ∫ p_X(g(y, θ)) |det| dθ on a grid
    of the one continuous θ leaf (trapezoid rule: the edges of the pieces cost O(grid step) relative error)."""
    (cname,) = [k for k, s in inv.theta_spec.items() if not s.discrete]
    discrete = [(k, s) for k, s in inv.theta_spec.items() if s.discrete]
    grid = jnp.linspace(lo, hi, n)
    masses = {}
    for values in itertools.product(*[range(int(s.support.lower_bound), int(s.support.upper_bound) + 1)
                                      for _, s in discrete]):
        fixed = {k: jnp.asarray(v, s.dtype) for (k, s), v in zip(discrete, values)}

        def density(t, y):
            theta = {**fixed, cname: t}
            x, ld = inv.with_log_det(y, theta)
            ok = inv.in_domain(y, theta)
            return jnp.where(ok, jnp.exp(log_prior(*x) + ld), 0.0)

        dens = np.asarray(jax.jit(jax.vmap(density, in_axes=(0, None)))(grid, y))
        masses[values] = float(np.trapezoid(dens, np.asarray(grid)))
    return masses


def _normal_logpdf(*xs):
    return sum(jax.scipy.stats.norm.logpdf(x) for x in xs)


@pytest.mark.parametrize("y", [0.8, -0.6])
def test_posterior_of_where_b_positive_b_else_a(y, scalar_inverses):
    """a, b ~ N(0, 1), observe where(b > 0, b, a) = y. For y > 0: b = y with a free (mass φ(y)),
    or a = y with b ≤ 0 (mass φ(y)/2), so P(b > 0 | y) = 2/3; for y ≤ 0 only the second piece."""
    inv = scalar_inverses["where(b > 0, b, a)"]
    masses = _piece_masses(inv, jnp.asarray(y), _normal_logpdf)
    (pred,) = [k for k, s in inv.theta_spec.items() if s.discrete]  # b > 0
    on = sum(m for (v,), m in masses.items() if v == 1)
    total = sum(masses.values())
    np.testing.assert_allclose(total, stats.norm.pdf(y) * (1.5 if y > 0 else 0.5), rtol=1e-3)
    np.testing.assert_allclose(on / total, 2 / 3 if y > 0 else 0.0, atol=1e-3)


@pytest.mark.parametrize("y", [0.8, -0.6])
def test_posterior_of_where_sum_positive(y, scalar_inverses):
    """a, b ~ N(0, 1), observe where(a + b > 0, a, b) = y: a = y with b > −y (mass φ(y)Φ(y)), or
    b = y with a ≤ −y (mass φ(y)Φ(−y)); P(a + b > 0 | y) = Φ(y)."""
    inv = scalar_inverses["where(a + b > 0, a, b)"]
    masses = _piece_masses(inv, jnp.asarray(y), _normal_logpdf)
    (pred,) = [k for k, s in inv.theta_spec.items() if s.discrete]  # a + b > 0
    on = sum(m for (v,), m in masses.items() if v == 1)
    total = sum(masses.values())
    np.testing.assert_allclose(total, stats.norm.pdf(y), rtol=1e-3)
    np.testing.assert_allclose(on / total, stats.norm.cdf(y), atol=1e-3)
