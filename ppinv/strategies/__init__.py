"""Hypothesis strategies for random programs, to fuzz inverses (ppinv's or your own rules).

``programs()`` draws straight-line JAX programs as :class:`RandomProgram`
objects. Each program is Python source (``prog.source``, runnable as written:
a failing program is its own reproducer) compiled to ``prog.fn``; its inputs
carry NumPyro supports. What is drawn is what has broken exact inverses:

* every support NumPyro has on the inputs: real, positive, nonnegative,
  unit_interval, intervals (with negative bounds too), greater_than, less_than;
* elementwise functions with and without rules (``erfc``, ``ndtr``), flat
  pieces whose output is solved (``relu``, ``maximum``/``minimum`` of two
  unknowns or against a constant, ``clip``), piecewise ``where``, and ``where``
  over two unknowns whose predicate moves with θ (``where(b > 0, b, a)``);
* arithmetic with fan-out, and known operands of every kind: Python floats,
  numpy and jnp scalars and vectors, jnp arrays captured from the enclosing scope;
* linear maps whose matrix depends on other unknowns (``w @ x`` with both
  unknown, a matrix stacked from unknown rows), vector–matrix products
  against constant non-square matrices;
* ``cond`` with operands also closed over by its branches, ``scan`` with
  weak-typed (Python float) carries, reductions, cumulative sums, picks,
  rotations and joins of small vectors.

The property is :func:`check_program`: either ``ppinv.inverse`` refuses the
program with an :class:`ppinv.InversionError` that explains itself, or the
inverse is sound (``f(g(y, θ)) == y`` at the PGF's θ and at perturbed θ),
complete through the PGF, has the right log|det|, derivatives that agree with
finite differences, and the same values under ``vmap``. Anything else — a wrong
value or any other exception — is a failure, classified by
:func:`check_program` (``FuzzOutcome.failure``) so that long runs can be
counted, and :func:`shrink` reduces a failing program to a small one.
Points where the inversion is ill-posed in floating point (``tanh`` saturated
near ±1) are skipped.

Requires ``hypothesis`` (a test dependency).

One job per module: ``vocabulary.py`` (the ops and how each is written as code),
``program.py`` (:class:`RandomProgram`), ``draw.py`` (:func:`programs`), ``oracle.py``
(:func:`check_program`, :func:`check_model_program`), ``shrinking.py`` (:func:`shrink`).

Examples
--------
>>> from hypothesis import given, settings
>>> from ppinv.strategies import programs, check_program
>>> @settings(max_examples=5, deadline=None)
... @given(programs())
... def test_fuzz(prog):
...     check_program(prog)
"""

from __future__ import annotations

from .draw import programs
from .oracle import FuzzOutcome, check_model_program, check_program
from .program import RandomProgram
from .shrinking import shrink
from .vocabulary import (  # noqa: F401  (the vocabulary, importable from here as before)
    BINARY,
    CONST_KINDS,
    REFS,
    SUPPORTS,
    UNARY,
    VECTOR_ONLY,
    WITH_CONST,
    make_support,
    support_code,
)

__all__ = ["RandomProgram", "programs", "check_program", "check_model_program", "FuzzOutcome", "shrink", "SUPPORTS"]
