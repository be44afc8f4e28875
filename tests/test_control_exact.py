"""Exactness through ``cond``/``switch``/``scan``: fan-out into bodies, branch choice, loop dtypes.

A value a branch closes over and also receives as an operand is one unknown of the branch
(not two), a branch choice that depends on unknowns is a discrete θ re-checked on the
recovered values, and no θ — at the PGF's value or anywhere else — gives an ``x`` with
``f(x) != y`` while the inverse reports it inside the domain.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.optimize
from jax import lax
from numpyro import handlers
from numpyro.infer.util import log_density

import ppinv
from ppinv.errors import InversionError
from tests.control_programs import check_exact, dense_log_det, run_programs


def closure_and_operand(a):
    """The reproducer of defect 6: ``a`` is both the operand and a closed-over value."""
    return lax.cond(a > 0.5, lambda v: v * a, lambda v: v + jnp.exp(a), a)


def _discrete_thetas(inv):
    """Every combination of the (finite) discrete θ leaves."""
    spec = inv.theta_spec
    names = list(spec)
    ranges = [range(int(spec[n].support.lower_bound), int(spec[n].support.upper_bound) + 1) for n in names]
    for values in itertools.product(*ranges):
        yield {n: jnp.asarray(v, spec[n].dtype) for n, v in zip(names, values)}


def _preimages(inv, y):
    found = []
    for theta in _discrete_thetas(inv):
        if bool(inv.in_domain(y, theta)):
            found.append((float(inv(y, theta)[0]), theta))
    return sorted(found, key=lambda p: p[0])


def _true_preimages(f, y, lo=-6.0, hi=6.0, n=4001):
    """Roots of f(a) = y by bracketing on a fine grid (f continuous between its kinks)."""
    f = jax.jit(f)
    grid = np.linspace(lo, hi, n)
    vals = np.asarray(jax.vmap(f)(jnp.asarray(grid))) - y
    roots = []
    for a, b, fa, fb in zip(grid, grid[1:], vals, vals[1:]):
        if fa == 0 or fa * fb < 0:
            r = scipy.optimize.brentq(lambda t: float(f(t)) - y, a, b, xtol=1e-14)
            if abs(float(f(r)) - y) < 1e-9:  # not a jump of a discontinuous f
                roots.append(r)
    return roots


# --- defect 6: an operand that the branches also close over ---------------------------------------
@pytest.fixture(scope="module")
def g_inverse():
    return ppinv.inverse(closure_and_operand, 1.0)


def test_operand_also_closed_over_is_one_unknown(g_inverse):
    inv = g_inverse
    assert inv.n_theta == 0  # g maps R to R: no continuous θ
    assert all(s.discrete for s in inv.theta_spec.values())


def test_operand_also_closed_over_reaches_every_preimage(g_inverse):
    inv = g_inverse
    y = 1.6499
    found = _preimages(inv, y)
    expected = _true_preimages(closure_and_operand, y)
    assert len(expected) == 2  # a + exp(a) = y at a ≈ 0.300 (a ≤ 0.5) and a² = y at a ≈ 1.2845 (a > 0.5)
    np.testing.assert_allclose([x for x, _ in found], expected, rtol=1e-10)
    for x, theta in found:
        np.testing.assert_allclose(closure_and_operand(jnp.asarray(x)), y, rtol=1e-12)
        ld = float(inv.log_abs_det_jacobian(y, theta))
        analytic = -np.log(2 * x) if x > 0.5 else -np.log1p(np.exp(x))  # log|dx/dy|
        np.testing.assert_allclose(ld, analytic, rtol=1e-10)
        np.testing.assert_allclose(ld, dense_log_det(inv, y, theta), rtol=1e-10)


def test_operand_also_closed_over_pgf_round_trip(g_inverse):
    inv = g_inverse
    for x in (-2.0, 0.1, 0.45, 0.55, 1.2845, 3.0):  # both branches, both sides of the kink
        y = closure_and_operand(jnp.asarray(x))
        theta = inv.pgf(x)
        assert bool(inv.in_domain(y, theta))
        np.testing.assert_allclose(inv(y, theta)[0], x, rtol=1e-12)


def test_operand_also_closed_over_gradients(g_inverse):
    inv = g_inverse

    def solve(yy, theta):
        return inv(yy, theta)[0]

    def log_det(yy, theta):
        return inv.log_abs_det_jacobian(yy, theta)

    h = 1e-6
    for x in (-1.0, 0.3, 0.9, 2.0):
        y = float(closure_and_operand(jnp.asarray(x)))
        theta = inv.pgf(x)
        for fn in (solve, log_det):
            fd = (float(fn(y + h, theta)) - float(fn(y - h, theta))) / (2 * h)
            np.testing.assert_allclose(float(jax.grad(fn)(y, theta)), fd, rtol=1e-6, atol=1e-8)


def test_operand_also_closed_over_no_theta_is_unsound(g_inverse):
    """Every θ the inverse reports inside the domain gives a preimage, at many y."""
    inv = g_inverse
    ys = jnp.linspace(-3.0, 6.0, 181)
    n_inside = 0
    for theta in _discrete_thetas(inv):
        inside = np.asarray(jax.vmap(inv.in_domain, in_axes=(0, None))(ys, theta))
        (xs,) = jax.vmap(inv, in_axes=(0, None))(ys, theta)
        np.testing.assert_allclose(jax.vmap(closure_and_operand)(xs[inside]), ys[inside], rtol=1e-10, atol=1e-12)
        n_inside += int(inside.sum())
    assert n_inside > len(ys)  # y > 0.25 has two preimages


def test_operand_also_closed_over_posterior_weights():
    """a ~ N(0, 1), observe g(a) = y: the two preimages weigh p(aᵢ) / |g'(aᵢ)|."""

    def model():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        numpyro.deterministic("y", closure_and_operand(a))

    y = 1.6499
    conditioned = ppinv.condition(model, {"y": y})
    trace = handlers.trace(handlers.seed(conditioned, 0)).get_trace()
    sites = [n for n, s in trace.items() if s["type"] == "sample"]


    @jax.jit
    def density_and_a(params):
        logp, tr = log_density(conditioned, (), {}, params)
        return logp, tr["a"]["value"]

    weights = {}
    for values in itertools.product(*[range(2)] * len(sites)):
        logp, a = density_and_a({n: jnp.asarray(v) for n, v in zip(sites, values)})
        if np.isfinite(float(logp)):
            weights[round(float(a), 6)] = float(np.exp(logp))
    roots = _true_preimages(closure_and_operand, y)
    slopes = [2 * r if r > 0.5 else 1 + np.exp(r) for r in roots]
    expected = np.array([np.exp(-0.5 * r**2) / s for r, s in zip(roots, slopes)])
    got = np.array([weights[round(r, 6)] for r in roots])
    assert len(weights) == 2
    np.testing.assert_allclose(got / got.sum(), expected / expected.sum(), rtol=1e-8)


# --- more shapes of the same fan-out ---------------------------------------------------------------
def _switch_closure(a):
    index = jnp.clip(jnp.floor(a + 1.0), 0, 2).astype(jnp.int32)
    return lax.switch(index, [lambda v: v * a - 1.0, lambda v: v + jnp.sin(a), lambda v: jnp.exp(v) + a], a)


def _two_operands_one_variable(a, b):
    return lax.cond(a > b, lambda u, w: u * w + b, lambda u, w: u + w + jnp.sinh(b), a, a)


def _closure_of_another_variable(a, b):
    return lax.cond(a > 0.2, lambda v: v * b, lambda v: v + jnp.tanh(b), a)


def _nested(a, b):
    def outer_true(v):
        return lax.cond(v > 1.0, lambda w: w * a + b, lambda w: w - b, v)

    return lax.cond(a > 0.0, outer_true, lambda v: v * 2.0 + b * a, a)


def _two_outputs(a, b):
    return lax.cond(a > b, lambda u: (u * b, u + a), lambda u: (u - b, jnp.exp(u) + a), a)


@pytest.mark.parametrize(
    "f,args",
    [(_switch_closure, (0.5,)), (_two_operands_one_variable, (0.5, 0.5)),
     (_closure_of_another_variable, (0.5, 0.5)), (_nested, (0.5, 0.5)), (_two_outputs, (0.5, 0.5))],
    ids=["switch-closure", "two-operands-one-variable", "closure-of-another", "nested", "two-outputs"],
)
def test_cond_fan_out_exact(f, args):
    inv = ppinv.inverse(f, *args)
    report = check_exact(f, args, inv, seed=1, n_points=5, n_perturbed=6)
    assert report.ok, report
    assert report.perturbed > 0  # θ away from the PGF's was exercised


@pytest.mark.parametrize("order", ["cond-first", "cond-last"])
def test_cond_frees_a_value_only_when_nothing_else_determines_it(order):
    """The branches leave ``b`` free, but another observation determines it: the cond waits
    for it instead of drawing ``b`` from θ (which over-determined the other relation)."""

    def cond(a, b):
        return lax.cond(jnp.array(2.0) > 1, lambda u, w: u * 2.0, lambda u, w: u + w, a, b)

    def f(a, b):
        other = jnp.exp(b) + b
        return (cond(a, b), other) if order == "cond-first" else (other, cond(a, b))

    inv = ppinv.inverse(f, 0.5, 0.5)
    assert inv.n_theta == 0
    x = (jnp.asarray(0.3), jnp.asarray(-0.8))
    back = inv(f(*x), inv.pgf(*x))
    np.testing.assert_allclose(jnp.stack(back), jnp.stack(x), rtol=1e-12)


def test_cond_branches_with_differently_shaped_theta_share_one_flat_theta():
    """Branch 0 frees a scalar, branch 1 a one-element slice: one real vector θ serves both."""

    def f(u):
        return lax.cond(u[0] > 0.0, lambda v: jnp.sum(v), lambda v: v[0] * jnp.exp(v[1]), u)

    inv = ppinv.inverse(f, jnp.ones(2))
    assert inv.n_theta == 1
    report = check_exact(f, (jnp.ones(2),), inv, seed=3, n_points=5, n_perturbed=6)
    assert report.ok, report
    assert report.perturbed > 0


def test_cond_with_a_constant_branch_is_refused_naming_it():
    """A flat branch cannot be inverted; the cond is refused, never inverted without it."""

    def f(a):
        return lax.cond(a > 0.0, lambda v: v * 2.0, lambda v: jnp.asarray(1.0), a)

    with pytest.raises(InversionError, match="branch 0 of the cond"):
        ppinv.inverse(f, 0.5)


@pytest.mark.parametrize(
    "f",
    [lambda a, b: jnp.where(jnp.array(-1.09) > -0.67, b**3, a**3),
     lambda a, b: jnp.where(jnp.array([True]), jnp.sinh(a - b), a)[0]],
    ids=["false", "true-vector"],
)
def test_where_with_a_constant_predicate_is_the_case_it_picks(f):
    """The unpicked case is unconstrained (freed), not solved: the inverse used to crash."""
    inv = ppinv.inverse(f, 0.5, 0.5)
    assert inv.n_theta == 1
    report = check_exact(f, (0.5, 0.5), inv, seed=2)
    assert report.ok and report.perturbed > 0, report


# --- loops: the same variable at several places ---------------------------------------------------
def test_scan_over_one_array_twice_is_one_unknown():
    def f(u):
        return lax.scan(lambda c, x: (c + x[0], x[0] * 2.0 + jnp.exp(x[1])), 0.0, (u, u))[1]

    inv = ppinv.inverse(f, jnp.ones(3))
    assert inv.n_theta == 0
    u = jnp.array([0.3, -0.7, 1.1])
    theta = inv.pgf(u)
    np.testing.assert_allclose(inv(f(u), theta)[0], u, rtol=1e-12)
    ld = float(inv.log_abs_det_jacobian(f(u), theta))
    jac = jax.jacfwd(lambda yy: inv(yy, theta)[0])(f(u))
    np.testing.assert_allclose(ld, np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-10)


def test_scan_with_an_unknown_at_two_carry_places_is_refused():
    """Step by step, two places of one unknown would be solved separately: refused, never split."""
    with pytest.raises(InversionError, match="loop .* takes the unknown"):  # carry and scanned array
        ppinv.inverse(lambda u: lax.scan(lambda c, x: (c * 0.5 + x, None), u, u)[0], jnp.ones(3))
    with pytest.raises(InversionError, match="scan"):  # initial carry (a, a)
        ppinv.inverse(
            lambda a: lax.scan(lambda c, x: ((c[0] * 0.5 + x, c[1] * 2.0 + c[0]), None), (a, a), jnp.ones(3))[0][1],
            1.0,
        )


# --- loops: dtypes and weak types of carries ----------------------------------------------------
XS = jnp.linspace(0.1, 0.4, 4)
XS32 = np.linspace(0.1, 0.4, 4).astype(np.float32)


@pytest.mark.parametrize(
    "f,x",
    [
        # a weak (Python float) initial carry, ys observed
        (lambda u: lax.scan(lambda c, x: (c * 0.5 + x, c + x), 0.0, u)[1], jnp.array([0.3, -0.2, 0.5, 1.0])),
        # constants of every kind in the body: Python, numpy float32, jnp arrays
        (lambda u: lax.scan(lambda c, x: (c * np.float32(0.5) + jnp.asarray(0.25) * x, c + x), 0.0, u)[1],
         jnp.array([0.3, -0.2, 0.5, 1.0])),
        (lambda a: lax.scan(lambda c, x: (c * jnp.array([0.5, 2.0]) + x, None), a, jnp.ones((3, 2)))[0],
         jnp.array([0.4, -0.3])),
        (lambda a: lax.fori_loop(0, 4, lambda i, c: c * 1.5 + 0.1 * i, a), np.float64(0.7)),
        (lambda a: lax.fori_loop(0, 3, lambda i, c: c * np.float32(1.5) + jnp.float32(0.1), a), np.float64(0.7)),
        (lambda a: lax.scan(lambda c, x: ((c[0] * 0.5 + x, c[1] + np.float32(1.0)), None), (a, jnp.float32(0.0)), XS)[0][0],
         np.float64(0.7)),
        (lambda a: lax.scan(lambda c, x: ((c[0] * 0.5 + x * c[1], c[1] + jnp.int32(1)), None), (a, jnp.int32(0)), XS)[0][0],
         np.float64(0.7)),
        (lambda a: lax.scan(lambda c, x: (c * x + 1.0, None), a, XS32)[0], np.float64(0.7)),
        (lambda b: jnp.cumsum(b) * 2.0, jnp.array([0.3, -0.2, 0.5])),
    ],
    ids=["weak-init", "mixed-consts", "vector-carry", "fori", "fori-f32-consts", "f32-carry", "int32-counter",
         "f32-xs", "cumsum"],
)
def test_scan_dtypes_invert_exactly(f, x):
    inv = ppinv.inverse(f, x)
    y = f(x)
    theta = inv.pgf(x)
    back, ld = inv.with_log_det(y, theta)
    np.testing.assert_allclose(back[0], x, rtol=1e-10)
    y_flat = jnp.ravel(y)
    jac = jax.jacfwd(lambda z: jnp.ravel(inv(z.reshape(jnp.shape(y)), theta)[0]))(y_flat)
    np.testing.assert_allclose(float(ld), np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-9, atol=1e-9)


def test_loop_that_traces_only_with_a_weak_initial_value():
    """A body casting its carry to float32 promotes a Python-float initial value; ppinv traces
    the program with the example argument's weak type rather than crash in ``lax.scan``."""

    def f(a):
        return lax.fori_loop(0, 3, lambda i, c: (c * 2.0).astype(jnp.float32), a)

    inv = ppinv.inverse(f, 1.0)
    y = f(1.3)
    (x,) = inv(y, inv.pgf(1.3))
    np.testing.assert_allclose(float(x), 1.3, rtol=1e-6)  # the program computes in float32
    assert float(f(float(x))) == float(y)
    np.testing.assert_allclose(float(inv.log_abs_det_jacobian(y, {})), -np.log(8.0), rtol=1e-6)


# --- random programs through cond/switch/where --------------------------------------------------
# Seeds whose programs ppinv inverts, covering operands closed over, nested conds, switch on an
# index of unknowns, and where/select inside branches.
SEEDS = [2, 15, 37, 52, 116, 163]


def _describe(failures):
    return "\n".join(f"seed {s}: {text}\n    {what}" for s, text, what in failures)


def test_random_control_programs_are_exact():
    counts, failures = run_programs(SEEDS)
    assert not failures, _describe(failures)
    assert counts["inverted"] >= len(SEEDS) // 2, counts


@pytest.mark.slow
def test_random_control_programs_long_run_is_never_unsound():
    """Whatever ppinv builds for 400 random programs: no θ inside the domain gives f(x) != y,
    and log|det| is the dense value. (Completeness failures of where/select pieces are
    reported by the piecewise tests.)"""
    counts, failures = run_programs(range(400))
    print(f"\nrandom cond/switch/where programs: {counts}")
    wrong = [(s, t, w) for s, t, w in failures if isinstance(w, list) and any("gives f(x)" in m or "vs dense" in m for m in w)]
    assert not wrong, _describe(wrong)
