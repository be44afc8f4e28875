"""Errors ppinv raises. Each says what was wrong, where, and how to fix it.

The taxonomy (every class ppinv raises lives here)::

    PPInvError
    ├── InputError            (also ValueError)  a value passed in has the wrong structure/shape/dtype
    ├── ConditionError        (also ValueError)  a NumPyro model cannot be conditioned as asked
    ├── DomainError           (also ValueError)  (y, θ) has no preimage: raised by an eager call
    └── InversionError                           the program cannot be inverted as written (build time)
        ├── NoRuleError                          a primitive has no inverse rule
        ├── OverdeterminedError                  the observations constrain something twice
        ├── UnderdeterminedError                 the solve needs more freedom than there is
        ├── FlatPieceError                       a flat piece of a relation would be dropped
        └── PieceRankError                       internal: a linear block is singular on a piece

``FuzzFailure`` (an ``AssertionError``) is what :mod:`ppinv.strategies` raises
when a generated program is neither refused nor inverted correctly: a failed
test, not an error of a ppinv call, so it sits outside :class:`PPInvError`.
"""

from __future__ import annotations

__all__ = [
    "PPInvError",
    "InversionError",
    "NoRuleError",
    "OverdeterminedError",
    "UnderdeterminedError",
    "FlatPieceError",
    "PieceRankError",
    "InputError",
    "ConditionError",
    "DomainError",
    "FuzzFailure",
]


class PPInvError(Exception):
    """Base class of every error raised by ppinv."""


class InputError(PPInvError, ValueError):
    """A value passed to ppinv has the wrong structure, shape or dtype."""


class InversionError(PPInvError):
    """The program cannot be inverted as written."""


class NoRuleError(InversionError):
    """A primitive (or a pattern of known/unknown operands) has no inverse rule."""


class OverdeterminedError(InversionError):
    """The observations constrain some value more than once.

    Raised at build time when

    * there are more observed output dimensions than unknown input dimensions
      (``dim Y > dim X``: more constraints than the unknowns can satisfy);
    * an output is observed twice (the same variable returned twice);
    * a relation has every place known already: the variable it would determine
      was determined by other relations (``(a, 2·a)`` with both observed), so the
      observations are functions of each other.

    The message names the relation (or output). Fix: observe fewer outputs, or
    independent ones.
    """


class UnderdeterminedError(InversionError):
    """The solve needs more freedom (θ) than ``dim X − dim Y`` provides, or leaves a
    variable undetermined.

    Raised at build time when

    * relations are coupled, no rule solves any of them alone, and freeing another
      variable would take more θ dimensions than are left (a joint solve is needed);
    * ``free=`` asks for more θ dimensions than ``dim X − dim Y``;
    * an observed relation does not actually depend on the variable it should
      determine (the unknown cancels out), so nothing determines that variable.

    The message names the relations. Fix: rewrite the program so each observation
    isolates a variable, free fewer variables, or declare the block's inverse with
    ``@ppinv.custom_inverse``.
    """


class FlatPieceError(InversionError):
    """A flat piece of a relation would be dropped: the program is refused instead."""


class PieceRankError(InversionError):
    """A linear block through a select whose predicate moves with θ is singular on some piece
    (or cannot be shown not to be): the scheduler solves the block another way."""


class ConditionError(PPInvError, ValueError):
    """A NumPyro model cannot be conditioned as asked."""


class DomainError(PPInvError, ValueError):
    """``y`` (with this θ) has no preimage: it is outside the range of the program.

    An eager call of an :class:`~ppinv.inverse.Inverse` raises it, naming the
    relation that failed: its primitive (``sqrt``, ``asin``, ``mul``, a linear
    block, ...), the source line of the user's program it came from, the
    offending values, and whether ``y`` is outside the range of ``f`` or θ outside
    the set it may take. Under ``jit``/``vmap`` nothing is raised: the values are
    NaN there and ``log_abs_det_jacobian`` is ``-inf``.

    >>> import jax.numpy as jnp
    >>> import ppinv
    >>> inv = ppinv.inverse(lambda x: jnp.sqrt(x), 1.0)
    >>> inv(-4.0)
    Traceback (most recent call last):
      ...
    ppinv.errors.DomainError: sqrt ... has no solution ...
    """


class FuzzFailure(AssertionError):
    """A program ppinv neither refused nor inverted correctly."""
