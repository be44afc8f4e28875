"""Planar robot arm: joint angles observed only through the end-effector position.

Model (``n_links`` = 3 or 5, link lengths ``l`` fixed)::

    q ~ Normal(0, σ)  (one vector site "angles", q ∈ Rⁿ)
    φ = cumsum(q)                                  absolute link angles
    end = (Σ l_i cos φ_i, Σ l_i sin φ_i)           observed exactly

What it shows: inverse kinematics as exact conditioning. The configurations
reaching a point form an (n − 2)-dimensional manifold with two "elbow"
branches; ppinv frees the first n − 2 joints (continuous θ) and solves the last
two in closed form, with a discrete elbow sign and two integer turn counts
(angles are only determined modulo 2π). No closed-form posterior.

Two ways to write it
--------------------
:func:`make_direct_model` is exactly the formula above; ppinv finds the planar
chain in it (``ppinv/joint/chain/``): after freeing n − 2 joints,
``Σ l cos φ`` and ``Σ l sin φ`` are solved for the last two angles in closed
form. :func:`make_model` computes the *same* map, but splits off the last two
links as a function :func:`two_link` whose inverse — the same textbook formula —
is declared with ``@ppinv.custom_inverse`` (the user-level extension mechanism),
as one would for a chain ppinv does not recognise. Same sites, same priors, same
observed function; ``tests/test_joint_chain.py`` checks the direct form's
posterior against quadrature.

Two-link inverse, for ``(u, v) = l₁(cos t₁, sin t₁) + l₂(cos(t₁+t₂), sin(t₁+t₂))``::

    c  = (u² + v² − l₁² − l₂²) / (2 l₁ l₂)                 (domain |c| ≤ 1)
    t₂ = ±acos(c) + 2π m                                   (elbow sign, turn m ∈ ℤ)
    t₁ = atan2(v, u) − atan2(l₂ sin t₂, l₁ + l₂ cos t₂) + 2π k   (turn k ∈ ℤ)
    log|det ∂(t₁, t₂)/∂(u, v)| = −log|l₁ l₂ sin t₂|
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv
from ppinv.theta import integer, sign

LENGTHS = {3: (1.0, 0.8, 0.6), 5: (1.0, 0.8, 0.6, 0.5, 0.4)}
SCALE = 0.5
#: The observed end-effector position, per number of links.
TARGET = {3: (1.6, 1.2), 5: (2.2, 1.3)}
TWO_PI = 2 * np.pi


def forward(angles, lengths):
    """End-effector position: the direct formula."""
    phi = jnp.cumsum(angles)
    lengths = jnp.asarray(lengths)
    return jnp.stack([jnp.sum(lengths * jnp.cos(phi)), jnp.sum(lengths * jnp.sin(phi))])


def make_two_link(l1: float, l2: float):
    """``two_link(t1, t2)``: the last two links (absolute angle ``t1``, joint ``t2``), with a declared inverse."""

    @ppinv.custom_inverse
    def two_link(t1, t2):
        return (l1 * jnp.cos(t1) + l2 * jnp.cos(t1 + t2), l1 * jnp.sin(t1) + l2 * jnp.sin(t1 + t2))

    @two_link.def_inverse(theta={"elbow": sign, "turn1": integer, "turn2": integer})
    def _(y, theta):
        u, v = y
        c = (u * u + v * v - l1 * l1 - l2 * l2) / (2 * l1 * l2)
        inside = jnp.abs(c) < 1
        c_safe = jnp.where(inside, c, 0.0)
        s = 1 - 2 * theta["elbow"]  # 0: +, 1: −
        t2 = s * jnp.arccos(c_safe) + TWO_PI * theta["turn2"]
        t1 = jnp.arctan2(v, u) - jnp.arctan2(l2 * jnp.sin(t2), l1 + l2 * jnp.cos(t2)) + TWO_PI * theta["turn1"]
        log_det = jnp.where(inside, -jnp.log(jnp.abs(l1 * l2 * jnp.sin(t2))), -jnp.inf)
        return (t1, t2), log_det

    @two_link.def_pgf
    def _(t1, t2):
        u, v = two_link.fun(t1, t2)
        elbow = (jnp.sin(t2) < 0).astype(jnp.asarray(0).dtype)
        base2 = (1 - 2 * elbow) * jnp.arccos(jnp.clip(jnp.cos(t2), -1.0, 1.0))
        turn2 = jnp.round((t2 - base2) / TWO_PI).astype(elbow.dtype)
        base1 = jnp.arctan2(v, u) - jnp.arctan2(l2 * jnp.sin(t2), l1 + l2 * jnp.cos(t2))
        turn1 = jnp.round((t1 - base1) / TWO_PI).astype(elbow.dtype)
        return {"elbow": elbow, "turn1": turn1, "turn2": turn2}

    return two_link


def make_model(n_links: int = 3):
    """The arm with ``n_links`` links, the last two through :func:`make_two_link`."""
    lengths = LENGTHS[n_links]
    head_lengths = jnp.asarray(lengths[:-2])
    two_link = make_two_link(*lengths[-2:])

    def model():
        angles = numpyro.sample("angles", dist.Normal(0.0, SCALE).expand([n_links]).to_event(1))
        head, qa, qb = jnp.split(angles, [n_links - 2, n_links - 1])
        phi = jnp.cumsum(head)
        u, v = two_link(phi[-1] + qa[0], qb[0])
        end = jnp.stack([jnp.sum(head_lengths * jnp.cos(phi)) + u, jnp.sum(head_lengths * jnp.sin(phi)) + v])
        numpyro.deterministic("end", end)

    model.__name__ = f"arm_{n_links}"
    return model


def make_direct_model(n_links: int = 3):
    """The same model written with :func:`forward` directly (ppinv finds the planar chain in it)."""
    lengths = LENGTHS[n_links]

    def model():
        angles = numpyro.sample("angles", dist.Normal(0.0, SCALE).expand([n_links]).to_event(1))
        numpyro.deterministic("end", forward(angles, lengths))

    model.__name__ = f"arm_direct_{n_links}"
    return model


model = make_model(3)


def data(n_links: int = 3):
    return {"end": np.asarray(TARGET[n_links])}


DATA = data(3)
LATENT_DIM = 3
OBSERVED_DIM = 2


def latent_dim(n_links: int = 3) -> int:
    return n_links


def conditioned(n_links: int = 3):
    """``ppinv.condition(make_model(n_links), data(n_links))``."""
    return ppinv.condition(make_model(n_links), data(n_links))
