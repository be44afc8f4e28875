"""Random programs through ``cond``/``switch``/``where``, and an exactness check for them.

The programs mix what the rule-by-rule fuzzer (``ppinv.strategies``) draws rarely: operands
of a ``cond`` that its branches also close over, nested conds, ``switch`` on an index computed
from unknowns, and ``where``/``select`` on predicates of unknowns. :func:`check_exact` checks
any inverse ppinv builds for them against independent references — soundness at θ far from
the PGF's (continuous leaves perturbed, discrete leaves redrawn), the PGF round trip, and
log|det| against ``jax.jacfwd`` + ``slogdet`` — and reports, never hides, a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

import ppinv
from ppinv.errors import PPInvError

_UNARY = {
    "exp": jnp.exp,
    "tanh": jnp.tanh,
    "sinh": jnp.sinh,
    "cube": lambda x: x**3,
    "square": lambda x: x * x,
    "sin": jnp.sin,
    "softplus": jax.nn.softplus,
    "affine": lambda x: 1.5 * x - 0.25,
}
_BINARY = {"add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply}


class ProgramGenerator:
    """``generate(seed) -> (f, example_args, text)``: one random program of 1–2 scalar inputs."""

    def __init__(self, max_depth=3):
        self.max_depth = max_depth

    def generate(self, seed):
        rng = np.random.RandomState(seed)
        n_in = int(rng.choice([1, 2], p=[0.55, 0.45]))
        names = [f"x{i}" for i in range(n_in)]
        fn, text = self._control(rng, names, self.max_depth)
        outs = [(fn, text)]
        if n_in == 2 and rng.rand() < 0.3:  # a second output: θ-free where ppinv inverts it
            outs.append(self._expr(rng, names, 2))

        def f(*xs):
            env = dict(zip(names, xs))
            vals = tuple(o(env) for o, _ in outs)
            return vals if len(vals) > 1 else vals[0]

        return f, tuple(0.5 for _ in names), " ; ".join(t for _, t in outs)

    # -- expressions --------------------------------------------------------------------------
    def _expr(self, rng, names, depth):
        r = rng.rand()
        if depth <= 0 or r < 0.2:
            return self._leaf(rng, names)
        if r < 0.45:
            return self._unary(rng, names, depth)
        if r < 0.7:
            return self._binary(rng, names, depth)
        return self._control(rng, names, depth)

    def _leaf(self, rng, names):
        if rng.rand() < 0.85:
            n = names[rng.randint(len(names))]
            return (lambda env: env[n]), n
        c = float(np.round(rng.uniform(-1.5, 1.5), 2))
        return (lambda env: jnp.asarray(c)), repr(c)

    def _unary(self, rng, names, depth):
        name = list(_UNARY)[rng.randint(len(_UNARY))]
        op = _UNARY[name]
        a, ta = self._expr(rng, names, depth - 1)
        return (lambda env: op(a(env))), f"{name}({ta})"

    def _binary(self, rng, names, depth):
        name = list(_BINARY)[rng.randint(len(_BINARY))]
        op = _BINARY[name]
        a, ta = self._expr(rng, names, depth - 1)
        if name == "mul" and rng.rand() < 0.5:  # a known factor keeps more programs invertible
            c = float(np.round(rng.uniform(0.5, 2.0), 2))
            return (lambda env: op(a(env), c)), f"{name}({ta}, {c})"
        b, tb = self._expr(rng, names, depth - 1)
        return (lambda env: op(a(env), b(env))), f"{name}({ta}, {tb})"

    def _predicate(self, rng, names, depth):
        a, ta = self._expr(rng, names, min(depth, 1))
        c = float(np.round(rng.uniform(-1.0, 1.0), 2))
        return (lambda env: a(env) > c), f"{ta} > {c}"

    def _control(self, rng, names, depth):
        kind = rng.choice(["cond", "cond2", "switch", "where", "select"], p=[0.35, 0.15, 0.15, 0.2, 0.15])
        inner = max(depth - 1, 0)
        if kind in ("where", "select"):
            p, tp = self._predicate(rng, names, inner)
            a, ta = self._expr(rng, names, inner)
            b, tb = self._expr(rng, names, inner)
            if kind == "where":
                return (lambda env: jnp.where(p(env), a(env), b(env))), f"where({tp}, {ta}, {tb})"
            return (lambda env: lax.select(p(env), *jnp.broadcast_arrays(a(env), b(env)))), f"select({tp}, {ta}, {tb})"
        # the operands: often variables the branches also close over
        n_ops = 2 if kind == "cond2" else 1
        ops = [self._leaf(rng, names) if rng.rand() < 0.7 else self._expr(rng, names, 1) for _ in range(n_ops)]
        inside = names + [f"v{i}" for i in range(n_ops)]
        n_branches = 3 if kind == "switch" else 2
        branches = [self._expr(rng, inside, inner) for _ in range(n_branches)]
        if kind == "switch":
            a, ta = self._expr(rng, names, 1)
            index = lambda env: jnp.clip(jnp.floor(a(env) + 1.0), 0, 2).astype(jnp.int32)  # noqa: E731
            tindex = f"clip(floor({ta} + 1), 0, 2)"
        else:
            p, tp = self._predicate(rng, names, inner)
            index = lambda env: p(env).astype(jnp.int32)  # noqa: E731
            tindex = tp

        def run(env):
            def branch(b):
                return lambda vs: jnp.asarray(b({**env, **{f"v{i}": v for i, v in enumerate(vs)}}), jnp.float64)

            return lax.switch(index(env), [branch(b) for b, _ in branches], tuple(o(env) for o, _ in ops))

        text = f"{kind}[{tindex}]({', '.join(t for _, t in ops)}: {' | '.join(t for _, t in branches)})"
        return run, text


# --- the check ---------------------------------------------------------------------------------
@dataclass
class ExactnessReport:
    points: int = 0
    perturbed: int = 0
    unsound: list = field(default_factory=list)
    log_det: list = field(default_factory=list)
    roundtrip: list = field(default_factory=list)

    @property
    def ok(self):
        return not (self.unsound or self.log_det or self.roundtrip)


def _close(a, b, rtol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all(np.abs(a - b) <= rtol * (1.0 + np.abs(b))))


def dense_log_det(inv, y, theta):
    """``log|det ∂x/∂(y, θ_continuous)|`` by ``jax.jacfwd`` of the inverse and ``slogdet``."""
    return float(_dense_log_det(inv, y, theta))


@jax.jit(static_argnums=0)
def _dense_log_det(inv, y, theta):
    cont = {n: jnp.asarray(theta[n], jnp.float64) for n, s in inv.theta_spec.items() if not s.discrete}
    z0, unravel = ravel_pytree((y, cont))

    def g(z):
        yy, th = unravel(z)
        return ravel_pytree(inv(yy, {**theta, **th}))[0]

    sign, logdet = jnp.linalg.slogdet(jax.jacfwd(g)(z0))
    return jnp.where(sign == 0, -jnp.inf, logdet)


def _redraw(inv, theta, rng):
    """θ away from the PGF's: continuous leaves moved in their unconstrained space, discrete redrawn."""
    out = {}
    for name, spec in inv.theta_spec.items():
        val = jnp.asarray(theta[name])
        if spec.discrete:
            sup = spec.support
            if isinstance(sup, constraints.integer_interval):
                lo, hi = int(sup.lower_bound), int(sup.upper_bound)
                out[name] = jnp.asarray(rng.randint(lo, hi + 1, size=val.shape), spec.dtype)
            else:
                out[name] = jnp.asarray(rng.randint(-2, 3, size=val.shape), spec.dtype)
        else:
            t = biject_to(spec.support)
            u = t.inv(val)
            out[name] = jnp.asarray(t(u + rng.normal(scale=0.7, size=np.shape(u))), spec.dtype)
    return out


def check_exact(f, args, inv, seed=0, n_points=3, n_perturbed=4, rtol=1e-7, ld_atol=1e-6):
    """Soundness, PGF round trip and log|det| of ``inv`` at random points (see the module doc)."""
    rng = np.random.RandomState(seed)
    report = ExactnessReport()
    f = jax.jit(f)
    for _ in range(n_points):
        x = tuple(jnp.asarray(rng.normal(scale=1.2, size=np.shape(a))) for a in args)
        y = f(*x)
        if not np.all(np.isfinite(ravel_pytree(y)[0])):
            continue
        report.points += 1
        theta = inv.pgf(*x)
        _check_at(f, inv, y, theta, report, rtol, ld_atol, expect=x)
        for _ in range(n_perturbed):
            _check_at(f, inv, y, _redraw(inv, theta, rng), report, rtol, ld_atol)
    return report


def _check_at(f, inv, y, theta, report, rtol, ld_atol, expect=None):
    inside = bool(inv.in_domain(y, theta))
    if expect is not None and not inside:
        report.roundtrip.append(f"x={expect}: outside the domain at the PGF's θ {theta}")
        return
    if not inside:
        return
    xs, ld = inv.with_log_det(y, theta)
    if expect is None:
        report.perturbed += 1
    elif not _close(ravel_pytree(xs)[0], ravel_pytree(expect)[0], 1e-6):
        report.roundtrip.append(f"x={expect}: round trip gave {xs}")
    y2 = f(*xs)
    if not _close(ravel_pytree(y2)[0], ravel_pytree(y)[0], rtol):
        report.unsound.append(f"y={y}, θ={theta}: x={xs} gives f(x)={y2}")
        return
    dense = dense_log_det(inv, y, theta)
    if np.isfinite(dense) and not abs(float(ld) - dense) <= ld_atol * (1 + abs(dense)):
        report.log_det.append(f"y={y}, θ={theta}: log|det| {float(ld)} vs dense {dense}")


def run_programs(seeds, generator=None, verbose=False):
    """Generate, invert and check; returns counts and the failures with their programs."""
    generator = generator or ProgramGenerator()
    counts = {"inverted": 0, "refused": 0, "invalid": 0, "crash": 0, "inexact": 0}
    failures = []
    for seed in seeds:
        f, args, text = generator.generate(seed)
        try:
            jax.make_jaxpr(f)(*args)
        except Exception:
            counts["invalid"] += 1
            continue
        try:
            inv = ppinv.inverse(f, *args)
        except PPInvError:
            counts["refused"] += 1
            continue
        except Exception as err:  # a crash inside ppinv: neither an answer nor a refusal
            counts["crash"] += 1
            failures.append((seed, text, f"crash while building: {type(err).__name__}: {err}"))
            continue
        try:
            report = check_exact(f, args, inv, seed=seed)
        except Exception as err:
            counts["crash"] += 1
            failures.append((seed, text, f"crash while running: {type(err).__name__}: {err}"))
            continue
        counts["inverted"] += 1
        if not report.ok:
            counts["inexact"] += 1
            failures.append((seed, text, (report.unsound + report.log_det + report.roundtrip)[:3]))
        if verbose:
            print(seed, "ok" if report.ok else "FAIL", text)
    return counts, failures
