"""Benchmark programs shared by the overhead experiments.

* :data:`PROGRAMS` — small programs, each with a hand-written inverse in the same
  θ-parametrisation (the yardstick for the overlay's run time);
* :func:`make_recipe` / :func:`make_program` — generated straight-line programs of a
  given number of equations (build-time scaling);
* :func:`make_scan_program` — a scan of a given length (trace/compile time must not grow).
"""

from __future__ import annotations

import math


import jax.numpy as jnp
import numpy as np

# =====================================================================================
# Part 1: programs with hand-written inverses
# =====================================================================================
# Each entry: f, n_args, sampler for x, θ "roles" as functions of x (used to match the
# overlay's θ leaves, whatever they are called), and the hand-written inverse
# hand(y, roles) -> (x tuple, log|det|) for ONE input (it is vmapped like the overlay).


def _p_abc(a, b, c):
    return a * b + c


def _hand_abc(y, t):
    a, b = t["a"], t["b"]
    return (a, b, y - a * b), jnp.zeros_like(y)


def _p_x012(x0, x1, x2):
    return x0 + x1 * x2


def _hand_x012(y, t):
    x1, x2 = t["x1"], t["x2"]
    return (y - x1 * x2, x1, x2), jnp.zeros_like(y)


def _p_mixed(a, b, c):
    return jnp.exp(a) * b + jnp.sin(c)


def _hand_mixed(y, t):
    a, c = t["a"], t["c"]
    # b = (y - sin c) / exp(a);  log|db/dy| = -a
    return (a, (y - jnp.sin(c)) * jnp.exp(-a), c), -a


def _p_multiple_variable_use(x, y):  # tests/test_prototype_programs.py
    a = x + y
    b = a + a
    c = a * a
    d = c + b
    e = y * a
    return e + d


def _hand_multiple_variable_use(f, t):
    a = t["a"]  # θ is a = x + y
    d = a * a + 2.0 * a
    y = (f - d) / a
    return (a - y, y), -jnp.log(jnp.abs(a))


# chain of 20 elementwise primitives: 4 x [mul 0.8, add 0.3, asinh, exp, log1p]
_CHAIN_STEPS = 4


def _p_chain20(x):
    h = x
    for _ in range(_CHAIN_STEPS):
        h = h * 0.8
        h = h + 0.3
        h = jnp.arcsinh(h)
        h = jnp.exp(h)
        h = jnp.log1p(h)
    return h


def _hand_chain20(y, t):
    z, ld = y, jnp.zeros_like(y)
    for _ in range(_CHAIN_STEPS):
        w = jnp.expm1(z)  # log1p^-1;  log|dw/dz| = z
        ld = ld + z
        u = jnp.log(w)  # exp^-1;  log|du/dw| = -log w = -u
        ld = ld - u
        v = jnp.sinh(u)  # asinh^-1;  log|dv/du| = log cosh u
        ld = ld + jnp.log(jnp.cosh(u))
        z = (v - 0.3) / 0.8
    return (z,), ld + _CHAIN_STEPS * (-math.log(0.8))


def _normal(*scales):
    def sample(rng, n, dtype):
        return [rng.normal(0.0, s, n).astype(dtype) for s in scales]

    return sample


PROGRAMS = [
    dict(name="a*b+c", f=_p_abc, n_args=3, sample=_normal(1, 1, 1),
         roles={"a": lambda x: x[0], "b": lambda x: x[1]}, hand=_hand_abc),
    dict(name="x0+x1*x2", f=_p_x012, n_args=3, sample=_normal(1, 1, 1),
         roles={"x1": lambda x: x[1], "x2": lambda x: x[2]}, hand=_hand_x012),
    dict(name="exp(a)*b+sin(c)", f=_p_mixed, n_args=3, sample=_normal(0.5, 1, 1),
         roles={"a": lambda x: x[0], "c": lambda x: x[2]}, hand=_hand_mixed),
    dict(name="multiple_variable_use", f=_p_multiple_variable_use, n_args=2, sample=_normal(1, 1),
         roles={"a": lambda x: x[0] + x[1]}, hand=_hand_multiple_variable_use),
    dict(name="chain20", f=_p_chain20, n_args=1, sample=_normal(1), roles={}, hand=_hand_chain20),
]


# =====================================================================================
# Part 2: generated straight-line programs
# =====================================================================================
def make_recipe(n_eqns, n_inputs=4, seed=0, side_reuse=3):
    """A random invertible straight-line program of exactly ``n_eqns`` primitive equations.

    ``x0`` runs along a *spine* to the single output; every spine relation has exactly
    one spine operand, so ``x0`` can be solved backwards once the side values are known.
    Side values are functions of ``x1..x{n-1}`` only (sin, exp, log, products), reused up
    to ``side_reuse`` times each (fan-out) and the inputs themselves many times. The
    spine multiplies and divides by the same positive side values, alternates the
    constant factors 0.8 / 1.25, and wraps some stretches in ``64·log(exp(s/64)·…)``,
    so values stay bounded and ∂y/∂x0 stays well away from 0 at every size (the round
    trip is checked). θ has ``n_inputs − 1`` continuous dimensions.

    Returns ``(ops, out)``: ops are tuples ``(kind, new_var, operand, [operand/constant])``.
    """
    rng = np.random.default_rng(seed)
    ops, count, uses = [], 0, {}
    unit, pos = [], []  # side values in [-1, 1]; positive bounded side values
    inputs = list(range(1, n_inputs))
    nvars, spine = n_inputs, 0
    open_factors, seg_factors = [], []
    small, in_exp = True, False
    seen = set()

    def new():
        nonlocal nvars
        nvars += 1
        return nvars - 1

    def avail(pool):
        return [v for v in pool if uses.get(v, 0) < side_reuse]

    def take(pool):
        p = avail(pool)
        if not p:
            return None
        v = int(p[rng.integers(len(p))])
        uses[v] = uses.get(v, 0) + 1
        return v

    while count < n_eqns:
        left = n_eqns - count
        c = rng.random()
        if rng.random() < 0.45:  # a side value (never a repeat of an earlier expression: ppinv's CSE would merge it)
            pick = None
            for _ in range(20):
                c = rng.random()
                if (c < 0.35 or len(avail(unit)) < 2) and left >= 2:
                    a = int(rng.choice(inputs))
                    b = int(rng.choice(avail(unit))) if avail(unit) and rng.random() < 0.5 else int(rng.choice(inputs))
                    cand = ("sin_add", a, b, 2, unit)
                elif c < 0.55 and len(avail(unit)) >= 2:
                    a, b = (int(v) for v in rng.choice(avail(unit), 2, replace=False))
                    cand = ("mul", a, b, 1, unit)
                elif c < 0.75 and left >= 2 and avail(unit):
                    cand = ("halfexp", int(rng.choice(avail(unit))), None, 2, pos)
                elif c < 0.85 and left >= 2 and avail(pos):
                    cand = ("log1", int(rng.choice(avail(pos))), None, 2, pos)
                else:
                    a = int(rng.choice(avail(unit))) if avail(unit) else int(rng.choice(inputs))
                    cand = ("scale", a, 0.75, 1, unit)
                kind, a, b = cand[:3]
                key = (kind, *sorted((a, b))) if kind in ("sin_add", "mul") else (kind, a, b)
                if (kind == "sin_add" and a == b) or key in seen:
                    continue
                pick = cand
                seen.add(key)
                break
            if pick is None:  # nothing new to compute on the side: extend the spine instead
                v = new(); ops.append(("shift", v, spine, 0.25)); count += 1; spine = v  # noqa: E702
                continue
            kind, a, b, cost, pool = pick
            for operand in (a, b) if kind in ("sin_add", "mul") else (a,):
                if operand not in inputs:
                    uses[operand] = uses.get(operand, 0) + 1
            v = new(); ops.append((kind, v, a) if b is None else (kind, v, a, b)); count += cost  # noqa: E702
            pool.append(v)
            continue
        # the spine
        if in_exp:
            if not seg_factors and (c < 0.6 or left < 4) and left >= 2:
                v = new(); ops.append(("log64", v, spine)); count += 2; in_exp = False  # noqa: E702
            elif seg_factors and (c < 0.5 or len(seg_factors) >= 2 or left < 4 + len(seg_factors) or not avail(pos)):
                v = new(); ops.append(("div", v, spine, seg_factors.pop())); count += 1  # noqa: E702
            elif avail(pos):
                p = take(pos); seg_factors.append(p)  # noqa: E702
                v = new(); ops.append(("mul", v, spine, p)); count += 1  # noqa: E702
            else:
                v = new(); ops.append(("log64", v, spine)); count += 2; in_exp = False  # noqa: E702
        elif c < 0.1 and left >= 8:
            v = new(); ops.append(("exp64", v, spine)); count += 2; in_exp = True  # noqa: E702
        elif c < 0.35:
            a = take(unit) if rng.random() < 0.7 else None
            a = int(rng.choice(inputs)) if a is None else a
            v = new(); ops.append(("add", v, spine, a)); count += 1  # noqa: E702
        elif c < 0.55 and open_factors and (len(open_factors) >= 3 or rng.random() < 0.5):
            p = open_factors.pop(int(rng.integers(len(open_factors))))
            v = new(); ops.append(("div", v, spine, p)); count += 1  # noqa: E702
        elif c < 0.55 and avail(pos):
            p = take(pos); open_factors.append(p)  # noqa: E702
            v = new(); ops.append(("mul", v, spine, p)); count += 1  # noqa: E702
        elif c < 0.75:
            v = new(); ops.append(("scale", v, spine, 0.8 if small else 1.25)); count += 1  # noqa: E702
            small = not small
        elif c < 0.88:
            v = new(); ops.append(("shift", v, spine, float(rng.choice([-0.25, 0.25])))); count += 1  # noqa: E702
        else:
            v = new(); ops.append(("neg", v, spine)); count += 1  # noqa: E702
        spine = v
    return ops, spine


def make_program(n_eqns, n_inputs=4, seed=0):
    ops, out = make_recipe(n_eqns, n_inputs, seed)

    def program(*xs):
        env = list(xs) + [None] * len(ops)
        for op in ops:
            k, v, a = op[0], op[1], env[op[2]]
            if k == "sin_add":
                r = jnp.sin(a + env[op[3]])
            elif k == "mul":
                r = a * env[op[3]]
            elif k == "div":
                r = a / env[op[3]]
            elif k == "add":
                r = a + env[op[3]]
            elif k == "halfexp":
                r = jnp.exp(a * 0.5)
            elif k == "log1":
                r = jnp.log(a + 1.0)
            elif k == "scale":
                r = a * op[3]
            elif k == "shift":
                r = a + op[3]
            elif k == "neg":
                r = -a
            elif k == "exp64":
                r = jnp.exp(a * (1.0 / 64.0))
            elif k == "log64":
                r = jnp.log(a) * 64.0
            else:  # pragma: no cover
                raise ValueError(k)
            env[v] = r
        return env[out]

    program.__name__ = f"chain{n_eqns}"
    return program



def make_scan_program(length):
    """Lotka–Volterra (``models/lotka_volterra.py``) over ``length`` steps, all states
    observed: the inverse solves each step's noise."""
    from models import lotka_volterra

    return lambda uz, un: lotka_volterra.simulate(jnp.exp(-2.0 + uz), un, n_steps=length)


