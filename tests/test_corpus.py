"""ppinv on programs written by other projects (tests/corpus/programs.py).

Two tests per program:

* ``test_builds_or_refuses`` (every entry, default tier): an invertible
  program builds; a program with no inverse is refused with an
  :class:`~ppinv.errors.InversionError` (never a crash, never a silent
  inverse); an invertible program ppinv refuses today is ``xfail(strict)``
  with ppinv's reason, so the suite notices when it starts to build.
* ``test_inverse_is_exact`` (invertible entries): soundness, PGF round trip,
  log|det| against the dense Jacobian and derivatives against central
  differences (``ppinv.testing.check_inverse``), and ``jax.grad`` of the
  inverse against central differences (``tests.corpus.grad_of_inverse_error``).
  A representative set (``FAST``) runs in the default tier; the rest run with
  ``-m slow`` and in ``experiments/corpus_report.py``. An entry ppinv is
  recorded to invert wrongly today is ``xfail(strict)`` naming the defect.
"""

import pytest

import ppinv
from ppinv.errors import InversionError
from tests.corpus import check_program
from tests.corpus.programs import PROGRAMS

# Checked in full in the default tier: one or more per source and per mechanism (scalar rules, piecewise,
# linear blocks, scans, null-space and sign/period θ). Compile time bounds how many (1-3 s each).
FAST = {
    "kumaraswamy_cdf",
    "scale_matvec_tril",
    "real_nvp",
    "split_coupling",
    "leaky_relu",
    "ordered_transform",
    "advanced_inverse_three",
    "odd_power",
    "sin",
    "sum",
    "log1mexp",
    "gaussian_linear",
    "eight_schools_transform_reparam",
    "ideal_gas",
    "kinetic_energy",
}


def _refused_today(p):
    return pytest.mark.xfail(strict=True, raises=InversionError,
                             reason=f"ppinv refuses today ({p.today.mechanism}): {p.today.message}")


def _wrong_today(p):
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"silent wrong answer today: {p.wrong_today}")


def _build_params():
    params = []
    for p in PROGRAMS:
        marks = [_refused_today(p)] if p.expect == "invert" and p.today else []
        params.append(pytest.param(p, marks=marks, id=p.name))
    return params


def _exact_params():
    params = []
    for p in PROGRAMS:
        if p.expect != "invert":
            continue
        marks = [] if p.name in FAST else [pytest.mark.slow]
        if p.today:
            marks.append(_refused_today(p))
        elif p.wrong_today:
            marks.append(_wrong_today(p))
        params.append(pytest.param(p, marks=marks, id=p.name))
    return params


@pytest.mark.parametrize("program", _build_params())
def test_builds_or_refuses(program):
    if program.expect == "refuse":
        with pytest.raises(InversionError) as info:
            ppinv.inverse(program.fn, *program.args, support=program.support)
        assert len(str(info.value)) > 40, f"refusal without a reason: {info.value!r}"
        return
    inv = ppinv.inverse(program.fn, *program.args, support=program.support)
    assert inv.n_theta >= 0


@pytest.mark.parametrize("program", _exact_params())
def test_inverse_is_exact(program):
    outcome = check_program(program, n_points=3, dense_points=1, grad_points=1)
    if outcome.status == "refused":
        raise InversionError(outcome.message)
    assert outcome.status == "inverted", f"{program.name} ({program.source}): {outcome.message}"


def test_corpus_is_well_formed():
    from tests.corpus.programs import MECHANISMS, REFUSAL_KINDS

    names = [p.name for p in PROGRAMS]
    assert len(names) == len(set(names)), "duplicate program names"
    assert len(PROGRAMS) >= 80
    assert FAST <= set(names)
    for p in PROGRAMS:
        assert ":" in p.source and p.source.split(":", 1)[1].strip(), f"{p.name}: source must name project: path"
        assert p.expect in ("invert", "refuse"), p.name
        if p.expect == "refuse":
            assert p.why.split(":", 1)[0] in REFUSAL_KINDS, f"{p.name}: why must start with a refusal kind"
            assert p.today is None and not p.wrong_today, p.name
        if p.today is not None:
            assert p.today.mechanism in MECHANISMS and p.today.message, p.name
