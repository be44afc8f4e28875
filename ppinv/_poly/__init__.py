"""Joint solves of one unknown through a rational function.

``z = b·x·(1 − x)`` uses ``x`` twice, and so does ``z = Vmax·x / (Km + x)``:
no single rule solves either. But the relations between ``x`` and ``z``
(sums, products, quotients and integer powers with known operands, element by
element) make ``z`` a ratio ``P(x) / Q(x)`` of polynomials whose coefficients
are computed from known values. Observing ``z = y`` leaves the polynomial
equation

    E(x) = y·Q(x) − P(x) = 0,

solved in closed form: degree 1 is the Möbius inverse ``x = −e₀/e₁`` (no θ);
degree 2 has two roots and a discrete θ (0: the larger root, 1: the smaller)
picks one; degree 3 (van der Waals' ``P(V)``) has one or three real roots
(Cardano's and the trigonometric form, polished by Newton's method) and a
discrete θ picks one by rank (0: the largest real root), a code beyond the
real roots being outside the domain — unless ``F = P/Q`` is proven strictly
monotone over the leaf's support (``_monotone.derivative_sign``), when at most
one root is admissible and it is taken with no θ. A root is admissible only where ``Q(x) ≠ 0`` (``Q`` is the product
of every divisor in the cone, so no division on the way is by zero) and ``x``
lies in the unknown's support (or the image of the relation defining it);
elsewhere the solve reports "not ok". Implicit differentiation of ``E`` gives

    log|dx/dy| = log|Q(x)| − log|E′(x)|,   |E′(root)| = √discriminant (degree 2).

**The degree is the true one.** The structure of the program bounds the
degree (``(a − a)·2a`` looks quadratic); the block evaluates the coefficients
at random values of its known inputs, and a coefficient that vanishes at every
one of them (within its own rounding bound) is identically zero. The equation
is solved at the degree that remains, and refused when the unknown cancels out.

**Kinks.** ``|u|`` of a rational ``u`` (softsign's ``x / (1 + |x|)``) is
``s·u`` with a sign ``s`` per kink: each sign pattern is a rational branch,
and a root of a branch is admissible only where every ``u`` has that branch's
sign (``u ≥ 0`` for ``+``, ``u < 0`` for ``−``). The candidates are then the
roots of every branch; a discrete θ picks one, unless the block proves at
build time that at most one is ever admissible: every coefficient a constant,
degree 1, each kink's argument affine in the unknown, and the Möbius map of
every region between the kinks free of poles and increasing (or every one
decreasing). The function is then strictly monotone and the one admissible
candidate is taken. A branch on which the output does not depend on the
unknown (``x − |x|`` for ``x ≥ 0``) is a flat piece: refused.

One job per module:

* ``rational.py`` — the ``rational`` slot of the rule table and coefficient arithmetic (:class:`Rational`).
* ``degree.py`` — a cone's structural degree and whether it is worth solving (:func:`cone_degree`).
* ``roots.py`` — closed-form roots of degree 1, 2 and 3 with ``|E′|`` at the root.
* ``certificate.py`` — the build-time proof that at most one root is ever admissible.
* ``block.py`` — the block itself: solve, log|det|, PGF (:class:`PolynomialBlock`).
"""

from __future__ import annotations

from .block import PolynomialBlock
from .degree import MAX_DEGREE, Degree, cone_degree, poly_degree, worth_solving
from .rational import Rational, default_rationals, padd, pmul, ppow

__all__ = ["poly_degree", "cone_degree", "worth_solving", "Degree", "PolynomialBlock", "MAX_DEGREE", "Rational",
           "default_rationals", "padd", "pmul", "ppow"]
