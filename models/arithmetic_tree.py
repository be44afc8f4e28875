"""An arithmetic expression tree evaluated by a recursive Python interpreter, its value observed.

The program is data: a tree of nested tuples ``(op, left, right)`` with ``op``
one of ``+ − × ÷`` and leaves naming latent sites. A small recursive Python
interpreter (:func:`evaluate`) walks it; JAX traces the walk into straight-line
code, which is what ppinv inverts. Leaves are latent ``Normal`` or
``LogNormal`` sites. The default tree (6 leaves)::

    y = (a · b + c) / (d − e · f)

    a, c, e ~ Normal(0, 1)        b, d, f ~ LogNormal(0, 1)

What it shows: inversion through a program produced by an interpreter (the
prototype's programs were straight-line code), with a mix of rules — the
scheduler frees five leaves (positive ones keep their support) and solves the
sixth through a chain of ``÷``, ``+`` and ``×`` inverses: a 5-dimensional
posterior on a curved 5-manifold of R⁶. No closed form.
"""

from __future__ import annotations

import numpyro
import numpyro.distributions as dist

import ppinv

#: ``(op, left, right)`` nested tuples; strings are leaves (latent sites).
TREE = ("/", ("+", ("*", "a", "b"), "c"), ("-", "d", ("*", "e", "f")))
#: Prior of each leaf.
LEAVES = {
    "a": ("Normal", 0.0, 1.0),
    "b": ("LogNormal", 0.0, 1.0),
    "c": ("Normal", 0.0, 1.0),
    "d": ("LogNormal", 0.0, 1.0),
    "e": ("Normal", 0.0, 1.0),
    "f": ("LogNormal", 0.0, 1.0),
}
Y = 0.7
DATA = {"y": Y}
LATENT_DIM = len(LEAVES)
OBSERVED_DIM = 1

_OPS = {
    "+": lambda u, v: u + v,
    "-": lambda u, v: u - v,
    "*": lambda u, v: u * v,
    "/": lambda u, v: u / v,
}


def leaves(tree) -> list:
    """Leaf names in left-to-right order (a name used twice appears twice)."""
    if isinstance(tree, str):
        return [tree]
    _, left, right = tree
    return leaves(left) + leaves(right)


def evaluate(tree, env):
    """The interpreter: the value of ``tree`` with leaf values from ``env``."""
    if isinstance(tree, str):
        return env[tree]
    op, left, right = tree
    if op not in _OPS:
        raise ValueError(f"unknown operator {op!r}; expected one of {sorted(_OPS)}")
    return _OPS[op](evaluate(left, env), evaluate(right, env))


def to_string(tree) -> str:
    if isinstance(tree, str):
        return tree
    op, left, right = tree
    return f"({to_string(left)} {op} {to_string(right)})"


def make_model(tree=TREE, priors=None):
    priors = LEAVES if priors is None else priors
    names = list(dict.fromkeys(leaves(tree)))

    def model():
        env = {}
        for name in names:
            family, loc, scale = priors[name]
            env[name] = numpyro.sample(name, getattr(dist, family)(loc, scale))
        numpyro.deterministic("y", evaluate(tree, env))

    model.__name__ = "arithmetic_tree"
    return model


model = make_model()


def conditioned(tree=TREE, y: float = Y, priors=None):
    """``ppinv.condition(make_model(tree), {"y": y})``."""
    return ppinv.condition(make_model(tree, priors), {"y": y})
