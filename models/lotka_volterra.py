"""Stochastic Lotka–Volterra predator–prey model observed without noise (Graham & Storkey 2017).

Model (Graham & Storkey, "Asymptotically exact inference in differentiable
generative models", Electronic Journal of Statistics 2017; their Lotka–Volterra
experiment)::

    u_z ~ N(0, I₄),  u_n ~ N(0, I₁₀₀)                     (sites "u_z", "u_n")
    z = exp(−2 + u_z)                                       (z₁..z₄: rates)
    r₀ = f₀ = 100,  δt = 1
    for s = 1..50  (a lax.scan):
        r_s = r_{s−1} + δt (z₁ r_{s−1} − z₂ r_{s−1} f_{s−1}) + √δt · u_n[2s−2]
        f_s = f_{s−1} + δt (z₄ r_s f_{s−1} − z₃ f_{s−1})     + √δt · u_n[2s−1]
    y = (r₁, f₁, r₂, f₂, …, r₅₀, f₅₀)                       observed exactly

(the predator update uses the new prey count ``r_s``).

What it shows: a 104-dimensional latent space observed through 100 exact
outputs — a 4-dimensional posterior over the rates, embedded in a curved
manifold of R¹⁰⁴. ppinv frees ``u_z`` (4 continuous θ), evaluates ``z``
forward, and inverts the scan step by step: each step solves the two ``+ u_n``
relations for the noise, with the carries ``(r, f)`` known from the
observations. No closed form; the data are simulated with
``z* = (0.4, 0.005, 0.05, 0.001)`` and ``u_n = RandomState(1234).normal(size=100)``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax

import ppinv

N_STEPS = 50
DT = 1.0
R0 = F0 = 100.0
Z_TRUE = np.array([0.4, 0.005, 0.05, 0.001])
NOISE_SEED = 1234
LATENT_DIM = 4 + 2 * N_STEPS
OBSERVED_DIM = 2 * N_STEPS


def simulate(z, u_n, n_steps: int = N_STEPS, dt: float = DT, r0: float = R0, f0: float = F0):
    """The observed trajectory ``(r₁, f₁, …, r_n, f_n)`` (shape ``(2n,)``), with ``lax.scan``."""
    z = jnp.asarray(z)
    noise = jnp.reshape(u_n, (n_steps, 2))
    sq = math.sqrt(dt)  # a Python float: keeps the noise's dtype (float32 stays float32)

    def step(carry, u):
        r, f = carry
        r_new = r + dt * (z[0] * r - z[1] * r * f) + sq * u[0]
        f_new = f + dt * (z[3] * r_new * f - z[2] * f) + sq * u[1]
        return (r_new, f_new), jnp.stack([r_new, f_new])

    init = (jnp.asarray(r0, noise.dtype), jnp.asarray(f0, noise.dtype))
    _, ys = lax.scan(step, init, noise)
    return jnp.reshape(ys, (-1,))


def model():
    u_z = numpyro.sample("u_z", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
    u_n = numpyro.sample("u_n", dist.Normal(0.0, 1.0).expand([2 * N_STEPS]).to_event(1))
    z = jnp.exp(-2.0 + u_z)
    numpyro.deterministic("y", simulate(z, u_n))


def true_latents():
    """The latents that generated :data:`DATA`."""
    return {"u_z": np.log(Z_TRUE) + 2.0, "u_n": np.random.RandomState(NOISE_SEED).normal(size=2 * N_STEPS)}


def _simulate_numpy(z, u_n, n_steps=N_STEPS, dt=DT):
    r, f = R0, F0
    out = []
    for s in range(n_steps):
        r = r + dt * (z[0] * r - z[1] * r * f) + np.sqrt(dt) * u_n[2 * s]
        f = f + dt * (z[3] * r * f - z[2] * f) + np.sqrt(dt) * u_n[2 * s + 1]
        out += [r, f]
    return np.array(out)


def data():
    """``{"y": trajectory}`` from ``z*`` and the fixed noise (float64, NumPy)."""
    lat = true_latents()
    y = _simulate_numpy(np.exp(lat["u_z"] - 2.0), lat["u_n"])
    assert abs(y[0] - 90.4714351637) < 1e-9 and abs(y[1] - 102.8561678217) < 1e-9, y[:2]
    return {"y": y}


DATA = data()


def conditioned():
    """``ppinv.condition(model, DATA)``."""
    return ppinv.condition(model, DATA)
