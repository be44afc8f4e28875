"""Supports and images: the monotone solve under every NumPyro support (either way its
bijection runs), and the image rules that give intermediates their supports.

An image must hold every value the primitive takes on its input's support: freed
intermediates take it as their θ support, and the monotone solve bounds derivatives
with it, so an image too small loses preimages silently.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from numpyro.distributions import constraints

import ppinv
from ppinv._ir import import_jaxpr
from ppinv.rules import DEFAULT_RULES
from ppinv.testing import check_gradient, check_inverse

INF = math.inf

# --- the monotone solve under every support ------------------------------------------------
# (name, constraint, lower bound, upper bound): the bounds as NumPyro states them, written out
# here so the points below do not depend on the code under test.
SUPPORTS = [
    ("real", constraints.real, -INF, INF),
    ("positive", constraints.positive, 0.0, INF),
    ("nonnegative", constraints.nonnegative, 0.0, INF),
    ("softplus_positive", constraints.softplus_positive, 0.0, INF),
    ("unit_interval", constraints.unit_interval, 0.0, 1.0),
    ("open_interval(0.5, 3)", constraints.open_interval(0.5, 3.0), 0.5, 3.0),
    ("interval(-2, -0.5)", constraints.interval(-2.0, -0.5), -2.0, -0.5),
    ("interval(-0.5, 3)", constraints.interval(-0.5, 3.0), -0.5, 3.0),
    ("greater_than(2)", constraints.greater_than(2.0), 2.0, INF),
    ("greater_than(-3)", constraints.greater_than(-3.0), -3.0, INF),
    ("greater_than_eq(-1)", constraints.greater_than_eq(-1.0), -1.0, INF),
    ("less_than(0)", constraints.less_than(0.0), -INF, 0.0),
    ("less_than(-1)", constraints.less_than(-1.0), -INF, -1.0),
    ("less_than(2)", constraints.less_than(2.0), -INF, 2.0),
    ("less_than_eq(0.5)", constraints.less_than_eq(0.5), -INF, 0.5),
    ("circular", constraints.circular, -math.pi, math.pi),
]
N_POINTS = 5
N_MODERATE = 3  # the first points of each support: 1e-3 (of its width, if bounded) or more from its bounds


def _inside(lo, hi):
    """Five points inside ``(lo, hi)``: moderate ones first (a finite-difference step there
    stays inside the support), then very near a bound and far from it (25 away on
    half-lines)."""
    if lo == -INF and hi == INF:
        return [0.3, -1.0, 2.0, -25.0, 25.0]
    if hi == INF:
        return [lo + 1.0, lo + 0.5, lo + 1e-3, lo + 1e-9, lo + 25.0]
    if lo == -INF:
        return [hi - 1.0, hi - 0.5, hi - 1e-3, hi - 1e-9, hi - 25.0]
    w = hi - lo
    return [lo + 0.5 * w, lo + 1e-3 * w, hi - 1e-3 * w, lo + 1e-9 * w, hi - 1e-9 * w]


def _outside(lo, hi):
    """Points just and far beyond each finite bound (1e-4 beyond: where F is flat at the
    bound, x + sin x at ±π, F of a point much nearer rounds onto F of the bound)."""
    pts = []
    for b, s in ((lo, -1.0), (hi, 1.0)):
        if math.isfinite(b):
            pts += [b + s * 1e-4 * (1 + abs(b)), b + s * 0.5]
    return pts


PROGRAMS = [
    # (name, F, whether F is defined on all of a support: log needs x > 0)
    ("x + exp x", lambda x: x + jnp.exp(x), lambda lo, hi: True),
    ("-x - x^3 (decreasing)", lambda x: -x - x**3, lambda lo, hi: True),
    ("x + sin x", lambda x: x + jnp.sin(x), lambda lo, hi: True),
    ("log x + x on positive supports", lambda x: jnp.log(x) + x, lambda lo, hi: lo >= 0.0),
]


def _finite_or_nan(v):
    return jnp.where(jnp.isfinite(v), v, jnp.nan)  # −∞ log|det| off the domain: "no value"


# the cubic is solved in closed form now, whose Jacobian over the whole grid compiles slowly (≈ 40 s)
@pytest.mark.parametrize("prog", [PROGRAMS[0]] + [pytest.param(p, marks=pytest.mark.slow) for p in PROGRAMS[1:]],
                         ids=[p[0] for p in PROGRAMS])
def test_monotone_solve_under_every_support(prog):
    """Every support, points near and far from every bound (one vector argument per
    support, so one program holds the whole grid), for increasing and decreasing programs,
    under increasing bijections and the decreasing one of ``less_than``: soundness, the PGF
    round trip, log|det| against the dense Jacobian, derivatives of x and log|det| against
    central differences; beyond each bound the observation has no preimage in the support
    and the inverse says so."""
    name, F, applies = prog
    sups = [s for s in SUPPORTS if applies(s[2], s[3])]
    support = tuple(s[1] for s in sups)
    f = lambda *xs: tuple(F(x) for x in xs)  # noqa: E731
    xs = tuple(jnp.asarray(_inside(lo, hi)) for _, _, lo, hi in sups)
    inv = ppinv.inverse(f, *xs, support=support)
    # a cubic proven monotone is solved in closed form (``_poly/``), the others numerically
    solved = inv.describe().count("numerically") + inv.describe().count("degree-3 polynomial equation")
    assert inv.theta_spec == {} and solved == len(sups), inv.describe()
    assert inv.pgf(*xs) == {}

    def x_and_log_det(y_flat):
        y = tuple(jnp.split(y_flat, len(sups)))
        x, ld = inv.with_log_det(y, {})
        return jnp.concatenate([*x, ld[None]])

    # one compiled function gives the values and their Jacobian (the solves compile slowly)
    jac_and_value = jax.jit(jax.jacfwd(lambda y: (x_and_log_det(y),) * 2, has_aux=True))

    def run(y):
        return jac_and_value(y)[1]

    y = jnp.concatenate(f(*xs))
    jac, out = jac_and_value(y)
    x_back, ld = out[:-1], out[-1]
    x = jnp.concatenate(xs)
    # the PGF round trip, to the accuracy y determines x with: y's round-off over |F′(x)|
    # (x + sin x at ±π, the ends of circular, has F′ ≈ 0: there only soundness is tight)
    slope = jnp.abs(jax.vmap(jax.grad(F))(x))
    tol = 1e-12 * (1 + jnp.abs(x)) + 16 * jnp.finfo(y.dtype).eps * (1 + jnp.abs(y)) / slope
    assert bool(jnp.all(jnp.abs(x_back - x) <= tol)), (x_back - x, tol)
    np.testing.assert_allclose(jnp.concatenate(f(*jnp.split(x_back, len(sups)))), y, rtol=1e-13, atol=1e-15)
    sign, dense = jnp.linalg.slogdet(jac[:-1])
    assert float(sign) != 0
    np.testing.assert_allclose(ld, dense, rtol=1e-9, atol=1e-9)

    # derivatives: every column whose steps stay inside the supports, which includes all the
    # moderate points (near-bound columns whose steps leave the support come back NaN: skipped)
    grad = check_gradient(lambda rows: jnp.stack([_finite_or_nan(run(r)) for r in rows]), y, out, {"x, log|det|": jac})
    assert not grad.mismatches, grad.mismatches[:5]
    assert grad.checked >= out.size * len(sups) * N_MODERATE

    # beyond a bound: y = F(x) for x outside the support has no preimage inside it
    for j, (sname, _, lo, hi) in enumerate(sups):
        for x_out in _outside(lo, hi):
            if name.startswith("log") and x_out <= 0:
                continue  # log x has no value there at all
            y_out = y.at[j * N_POINTS].set(F(jnp.asarray(x_out)))
            assert bool(jnp.all(jnp.isnan(run(y_out)[:-1]))), (sname, x_out)


def test_decreasing_bijection_regression():
    """Issue 9, defect 2: ``biject_to(less_than(0))`` decreases; the bracket search took it
    for increasing and found only the root at its start point."""
    f = lambda x: x + jnp.exp(x)  # noqa: E731
    inv = ppinv.inverse(f, -1.0, support=constraints.less_than(0.0))
    for x in (-3.0, -1.0, -1e-8, -40.0):
        (got,) = inv(f(x), {})
        # y is known to round-off |y|·eps, so x to that over F′(x) ≈ 1..2
        np.testing.assert_allclose(got, x, rtol=1e-12, atol=4e-16)
    g = lambda x: -x - x**3  # noqa: E731
    inv = ppinv.inverse(g, -3.0, support=constraints.less_than(-1.0))
    (got,) = inv(g(-7.5), {})
    np.testing.assert_allclose(got, -7.5, rtol=1e-12)


def test_monotone_solve_gradient_under_less_than():
    """jax.grad through the solve under the decreasing bijection: dx/dy = 1/F′(x)."""
    f = lambda x: x + jnp.exp(x)  # noqa: E731
    inv = ppinv.inverse(f, -1.0, support=constraints.less_than(0.0))
    x = -2.0
    dxdy = jax.grad(lambda y: inv(y, {})[0])(f(x))
    np.testing.assert_allclose(dxdy, 1.0 / (1.0 + math.exp(x)), rtol=1e-10)


def test_monotone_refuses_a_simplex_leaf():
    """A leaf with a support that is not an interval element by element cannot be solved in
    its bijection's coordinate elementwise: the monotone proof declines it."""
    from ppinv._monotone import derivative_sign

    assert derivative_sign([], object(), constraints.simplex, lambda v: None) == 0


# --- images of bounded supports: regressions of issue 9, defect 8 ---------------------------
def test_sinh_image_of_unit_interval_round_trip():
    """``sinh`` of ``x ∈ [0, 1]`` lies in [0, sinh 1], not in [0, 1]: the freed ``sinh`` value's
    θ support must hold sinh(0.9) = 1.027, so the round trip at x = 0.9 works."""
    f = lambda x, b, c: (jnp.sinh(x) * b, jnp.sinh(x) + c)  # noqa: E731
    support = (constraints.unit_interval, None, None)
    inv = ppinv.inverse(f, 0.5, 1.0, 1.0, support=support)
    theta = inv.pgf(0.9, 1.0, 1.0)
    (name,) = theta
    spec = inv.theta_spec[name]
    assert bool(spec.support.check(math.sinh(0.9)))
    assert bool(spec.support.check(math.sinh(1.0)))
    assert not bool(spec.support.check(1.2))  # tight: sinh 1 = 1.1752
    x = inv(f(0.9, 1.0, 1.0), theta)
    np.testing.assert_allclose(x, (0.9, 1.0, 1.0), rtol=1e-12)
    check_inverse(f, 0.5, 1.0, 1.0, inv=inv, support=support, points=[(0.9, 1.0, 1.0), (0.999, -2.0, 0.5)],
                  rtol=1e-9, log_det_atol=1e-8)


def test_several_roots_are_never_one():
    """``(sinh x, b + sinh(x)·sin b)`` with x ∈ (0, 1), b ∈ (2, 4) at (0.95, π): b has three
    roots (2.394, 3.142, 3.889) since sinh x reaches 1.1 > 1. With the true image of sinh the
    relation is not provably monotone, and it is refused, naming the relation — before, the
    image [0, 1] made it look monotone and only 3.889 was ever drawn."""
    f = lambda x, b: (jnp.sinh(x), b + jnp.sinh(x) * jnp.sin(b))  # noqa: E731
    support = (constraints.interval(0.0, 1.0), constraints.interval(2.0, 4.0))
    y = f(0.95, math.pi)
    # the three roots, independently: b + s·sin b = y on (2, 4)
    s = math.sinh(0.95)
    grid = np.linspace(2.0, 4.0, 200001)
    h = grid + s * np.sin(grid) - float(y[1])
    assert int(np.sum(np.sign(h[1:]) != np.sign(h[:-1]))) == 3
    with pytest.raises(ppinv.InversionError) as err:
        ppinv.inverse(f, 0.5, 3.0, support=support)
    msg = str(err.value)
    assert "add(b" in msg and "monotone" in msg


def test_tight_images_still_prove_monotone():
    """The same relation with x ∈ (0, 0.5): sinh x ≤ 0.52 < 1, so b + sinh(x)·sin b is
    increasing in b and the one root is found exactly."""
    f = lambda x, b: (jnp.sinh(x), b + jnp.sinh(x) * jnp.sin(b))  # noqa: E731
    support = (constraints.interval(0.0, 0.5), constraints.interval(2.0, 4.0))
    inv = ppinv.inverse(f, 0.25, 3.0, support=support)
    assert "numerically" in inv.describe()
    check_inverse(f, 0.25, 3.0, inv=inv, support=support, n_points=4, rtol=1e-9, log_det_atol=1e-7)


# --- every image rule against sampled images --------------------------------------------------
N = 256
_V = jnp.linspace(0.1, 1.0, N)


def _examples():
    """Small programs; together they use every primitive that has an image rule (the
    coverage test below fails when one is missing: add an example for it)."""
    x = jnp.ones(N)
    u = [
        jnp.exp, jnp.exp2, jnp.log, jnp.log1p, jnp.expm1, jnp.log2, jnp.sqrt, lax.rsqrt, jnp.cbrt,
        jnp.sin, jnp.cos, jnp.tan, jnp.arcsin, jnp.arccos, jnp.arctan, jnp.sinh, jnp.cosh, jnp.tanh,
        jnp.arcsinh, jnp.arccosh, jnp.arctanh, jax.nn.sigmoid, jax.scipy.special.erf,
        jax.scipy.special.erfinv, lax.erfc, jnp.negative, jnp.abs, jnp.copy,
        lambda a: a**2, lambda a: a**3, lambda a: a**4, lambda a: a**-1, lambda a: a**-2, lambda a: a**-3,
        lambda a: lax.square(a) if hasattr(lax, "square") else a * a,
        lambda a: lax.reduce_precision(a, 11, 52), lambda a: lax.reduce_precision(a, 5, 10),
        lambda a: lax.optimization_barrier(a), lambda a: a.astype(jnp.float32),
        lambda a: a * 3.0, lambda a: a * -2.0, lambda a: a + 2.0, lambda a: a + -2.0, lambda a: a / 4.0,
        lambda a: 4.0 / a, lambda a: a * _V, lambda a: a + _V,
        lambda a: jnp.reshape(a, (16, 16)), lambda a: a[::-1], lambda a: jnp.broadcast_to(a, (2, N)),
    ]
    out = [(f, (x,)) for f in u]
    b = [lambda a, c: a + c, lambda a, c: a * c, lambda a, c: a / c, lambda a, c: a - c,
         lambda a, c: jnp.concatenate([a, c]), lambda a, c: jnp.stack([a, c]),
         lambda a, c: lax.select_n(np.arange(N) % 2 == 0, a, c)]
    out += [(f, (x, x)) for f in b]
    out += [
        (lambda a: jnp.sum(a, axis=1), (jnp.ones((64, 4)),)),
        (lambda a: a.T, (jnp.ones((16, 16)),)),
        (lambda a: jnp.squeeze(a, 0), (jnp.ones((1, N)),)),
    ]
    return out


def _example_eqns():
    """(primitive → relations of the examples that apply it to the examples' inputs)."""
    table = DEFAULT_RULES.image_rules()
    found = {}
    for fn, args in _examples():
        prog = import_jaxpr(jax.make_jaxpr(fn)(*args))
        inputs = set(prog.invars)
        for e in prog.eqns:
            if e.prim in table and len(e.outs) == 1 and all(v.is_const or v in inputs for v in e.ins):
                found.setdefault(e.prim, []).append(e)
    return table, found


IMAGE_SUPPORTS = [
    ("real", constraints.real, -INF, INF),
    ("positive", constraints.positive, 0.0, INF),
    ("unit_interval", constraints.unit_interval, 0.0, 1.0),
    ("interval(-2, -0.5)", constraints.interval(-2.0, -0.5), -2.0, -0.5),
    ("interval(-0.5, 3)", constraints.interval(-0.5, 3.0), -0.5, 3.0),
    ("less_than(-1)", constraints.less_than(-1.0), -INF, -1.0),
    ("greater_than(2)", constraints.greater_than(2.0), 2.0, INF),
]


def _sample(rng, lo, hi, shape):
    """Points inside (lo, hi): uniform ones and ones within 1e-6 … 1 of each bound, log-spread;
    on half-lines out to 30 from the bound (beyond, exp and sinh overflow and saturate)."""
    n = int(np.prod(shape))
    d = 10.0 ** rng.uniform(-6, math.log10(30.0), n)  # distances from a bound
    if lo == -INF and hi == INF:
        x = rng.choice([-1.0, 1.0], n) * d
    elif hi == INF:
        x = lo + d
    elif lo == -INF:
        x = hi - d
    else:
        w = hi - lo
        t = np.concatenate([rng.uniform(0, 1, n - n // 2), 10.0 ** rng.uniform(-6, -1, n // 2)])
        x = np.where(rng.uniform(size=n) < 0.5, lo + w * t, hi - w * t)
        x = np.clip(x, np.nextafter(lo, hi), np.nextafter(hi, lo))
    return x.reshape(shape)


def test_every_image_rule_has_an_example():
    table, found = _example_eqns()
    missing = sorted(p.name for p in table if p not in found)
    assert not missing, f"no example program applies {missing}: add one to _examples()"


def test_every_image_holds_the_sampled_images():
    """For every primitive with an image rule (the table's, not a list kept here), every
    relation of the examples, and every combination of input supports: outputs at points
    sampled in the inputs' supports lie in the claimed image (an unknown image is None)."""
    rng = np.random.default_rng(0)
    table, found = _example_eqns()
    checked = 0
    for prim, eqns in found.items():
        image = table[prim]
        for e in eqns:
            unknown = [v for v in e.ins if not v.is_const]
            for combo in _combinations(len(unknown)):
                sups = iter(combo)
                chosen = {v: next(sups) for v in unknown}
                claimed = image(e, tuple(chosen[v][1] if v in chosen else None for v in e.ins))
                if claimed is None:
                    continue
                vals = [v.value if v.is_const else jnp.asarray(_sample(rng, chosen[v][2], chosen[v][3], v.shape),
                                                              v.dtype) for v in e.ins]
                (out,) = e.bind(*vals)
                out = np.asarray(out, np.float64)
                defined = ~np.isnan(out)  # outside the primitive's domain (log of a negative)
                inside = np.asarray(claimed.check(jnp.asarray(out)))
                bad = defined & ~inside
                assert not bad.any(), (
                    f"{e.describe()}: for inputs in {[c[0] for c in combo]} the image {claimed} misses "
                    f"{out[bad][:5]}"
                )
                checked += 1
    assert checked > 250


def _combinations(k):
    if k == 0:
        return [()]
    if k == 1:
        return [(s,) for s in IMAGE_SUPPORTS]
    return [(s, t) for s in IMAGE_SUPPORTS for t in IMAGE_SUPPORTS]


@pytest.mark.parametrize(
    "fn, sup, want",
    [
        (jnp.sinh, constraints.unit_interval, (0.0, math.sinh(1.0))),
        (jnp.arcsinh, constraints.interval(-2.0, -0.5), (math.asinh(-2.0), math.asinh(-0.5))),
        (jnp.arctanh, constraints.interval(-0.5, 3.0), (math.atanh(-0.5), INF)),
        (jnp.cbrt, constraints.less_than(-1.0), (-INF, -1.0)),
        (jnp.arccos, constraints.interval(-0.5, 3.0), (0.0, math.acos(-0.5))),  # decreasing
        (lambda a: a**-1, constraints.greater_than(2.0), (0.0, 0.5)),  # decreasing
        (lambda a: a**2, constraints.interval(-2.0, -0.5), (0.25, 4.0)),  # decreasing on x < 0
        (jnp.exp, constraints.less_than(-1.0), (0.0, math.exp(-1.0))),
        (jnp.tanh, constraints.positive, (0.0, 1.0)),
    ],
)
def test_monotone_images_map_the_end_points(fn, sup, want):
    """Images of monotone maps are the end points mapped (swapped when the map decreases),
    to within the few units of round-off they are widened by."""
    prog = import_jaxpr(jax.make_jaxpr(fn)(1.0))
    (e,) = [e for e in prog.eqns if DEFAULT_RULES.image_rule(e.prim) is not None]
    got = DEFAULT_RULES.image_rule(e.prim)(e, (sup,))
    lo = getattr(got, "lower_bound", -INF)
    hi = getattr(got, "upper_bound", INF)
    for g, w in zip((lo, hi), want):
        assert g == w if not math.isfinite(w) or w == 0 else abs(g - w) <= 1e-14 * abs(w), (got, want)


def test_identity_like_maps_copy_and_rounding_maps_do_not():
    """Only maps that return their input unchanged copy its support: a conversion to fewer
    bits can round onto or over a bound, so its image is unknown."""
    sup = constraints.interval(0.1, 0.2)
    for fn, copies in [(jnp.copy, True), (lambda a: lax.reduce_precision(a, 11, 52), True),
                       (lambda a: lax.reduce_precision(a, 5, 10), False),
                       (lambda a: a.astype(jnp.float32), False)]:
        prog = import_jaxpr(jax.make_jaxpr(fn)(jnp.float64(1.0)))
        (e,) = [e for e in prog.eqns if DEFAULT_RULES.image_rule(e.prim) is not None]
        got = DEFAULT_RULES.image_rule(e.prim)(e, (sup,))
        assert (got is sup) == copies, (e.describe(), got)
