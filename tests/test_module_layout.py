"""The packages ppinv's largest modules were split into: small modules, each saying its one job;
the old import paths still work; every rule they hold registered exactly once, in the old order."""

import ast
import importlib
import pathlib

import pytest
from jax import lax

import ppinv
from ppinv._compat import COND_P, CUSTOM_VJP_P, SCAN_P, WHILE_P
from ppinv.rules import DEFAULT_RULES

ROOT = pathlib.Path(ppinv.__file__).parent
SPLIT = ["_block", "_piecewise", "rules/control", "rules/structural", "strategies"]
MAX_LINES = 400


def _modules():
    return sorted(p for d in SPLIT for p in (ROOT / d).glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_split_modules_are_small_and_say_their_job(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES
    assert ast.get_docstring(ast.parse(text)), f"{path} has no docstring saying its job"


# names other modules, tests and experiments import from the modules as they were before the split
OLD_PATHS = {
    "ppinv._block": ["is_linear", "LinearBlock", "PieceRankError", "MatrixSolve", "KnownStructure",
                     "concrete_const", "const_has_zero"],
    "ppinv._piecewise": ["PiecewiseBlock", "piecewise_cone", "is_elementwise", "FlatPiece", "FlatPieceError",
                         "theta_dependent", "union_of_flat_pieces", "UnionSchedule", "piece_support", "_EMPTY"],
    "ppinv.rules.control": ["call_body_rule", "_ScanSolver"],
    "ppinv.rules.structural": ["entry_split_block", "EntrySplitBlock", "placement", "index_refusal", "Placement",
                               "MAX_SPLIT_ENTRIES"],
    "ppinv.strategies": ["RandomProgram", "programs", "check_program", "check_model_program", "FuzzOutcome",
                         "shrink", "SUPPORTS", "UNARY", "BINARY", "make_support", "support_code"],
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_old_import_paths_still_work(module):
    mod = importlib.import_module(module)
    missing = [n for n in OLD_PATHS[module] if not hasattr(mod, n)]
    assert not missing


def test_no_rule_is_registered_twice():
    for prim, rules in DEFAULT_RULES._rules.items():
        assert len({id(r) for r in rules}) == len(rules), prim


def _expected_rules():
    from ppinv.rules.control import calls, cond, scan, while_loop
    from ppinv.rules.structural import joins, placements, select

    return {
        lax.select_n_p: [select._free_cases_rule, select._select_n_rule],  # newer first
        SCAN_P: [scan._scan_rule],
        COND_P: [cond._cond_rule],
        CUSTOM_VJP_P: [calls.call_body_rule],
        WHILE_P: [while_loop._while_rule],
        lax.concatenate_p: [joins._concatenate_rule],
        lax.gather_p: [placements._placement_rule],
        lax.scatter_add_p: [placements._placement_rule],
    }


def test_split_rules_are_registered_once_in_the_old_order():
    for prim, expected in _expected_rules().items():
        mine = [r for r in DEFAULT_RULES.rules_for(prim) if any(r is e for e in expected)]
        assert mine == expected, prim
