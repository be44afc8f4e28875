"""Planar chains: two angles from an end point (two-link inverse kinematics).

An arm of links of known lengths ``rᵢ`` at angles ``αᵢ`` reaches

    X = K_x + Σ rᵢ cos αᵢ,   Y = K_y + Σ rᵢ sin αᵢ,

where the angles are integer combinations of unknown joint angles (absolute
angles ``αᵢ = qᵢ``, or relative ones ``α = cumsum(q)``) plus known offsets.
Observing ``(X, Y)`` leaves ``n − 2`` joints free: all but the last two become
θ, and the last two links are solved in closed form. With the end point of the
last two links ``p = (X, Y) − K − Σ_{known} rᵢ e(αᵢ)``, ``δ = α₂ − α₁``:

    cos δ = (|p|² − r₁² − r₂²) / (2 r₁ r₂)          (the domain: |cos δ| < 1)
    δ = ±acos(cos δ) + 2πm                            (θ: the elbow, the turn m)
    α₁ = atan2(p_y, p_x) − atan2(r₂ sin δ, r₁ + r₂ cos δ) + 2πk

and the two joints from ``(α₁, δ)`` by the integer matrix of the chain (which must
be unimodular, so whole turns stay whole turns). By the block structure of the
map (θ passes through),

    log|det ∂q/∂(X, Y, θ)| = −log|r₁ r₂ sin δ|.

A joint whose support is an interval of width at most 2π needs no turn count:
its one representative in the support is taken (and checked); otherwise an
integer θ counts the turns. The chain is found in what users write: sums of
``l * cos(t)`` terms, or ``jnp.sum(lengths * jnp.cos(jnp.cumsum(q)))``, with the
two coordinates as separate outputs or stacked.

One job per module: ``terms.py`` (the coordinates as sums of trigonometric terms), ``angles.py``
(angles as integer combinations of joints), ``strategy.py`` (:class:`PlanarChains`, which pairs
the coordinates into a chain), ``block.py`` (:class:`ChainBlock`, the closed-form solve).
"""

from __future__ import annotations

from .block import ChainBlock
from .strategy import PlanarChains

__all__ = ["PlanarChains", "ChainBlock"]
