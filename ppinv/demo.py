"""A quick demonstration: ``python -m ppinv.demo``.

Inverts a small program and prints, for a few θ, the preimage ``x``, ``f(x)``
(equal to the observed ``y``) and ``log|det|``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import ppinv


def program(a, b, c):
    return a * b + jnp.sin(c)


def main():
    jax.config.update("jax_enable_x64", True)
    inv = ppinv.inverse(program, 1.0, 1.0, 1.0)
    print(inv.describe())
    y = 1.5
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    print(f"\nobserved y = {y}")
    for k in keys:
        theta = inv.sample_theta(k)
        x, log_det = inv.with_log_det(y, theta)
        fx = program(*x)
        shown = ", ".join(f"{float(v):+.4f}" for v in x)
        print(f"  x = ({shown})   f(x) = {float(fx):.12f}   log|det| = {float(log_det):+.4f}")


if __name__ == "__main__":
    main()
