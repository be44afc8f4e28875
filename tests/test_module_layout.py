"""The packages ppinv's largest modules (and the experiment scripts) were split into: small modules,
each saying its one job; the old import paths and the names scripts read from each other still work;
every rule they hold registered exactly once, in the old order; which calls stay whole decided once."""

import ast
import importlib
import importlib.util
import pathlib

import pytest
from jax import lax

import ppinv
from ppinv._compat import COND_P, CUSTOM_VJP_P, SCAN_P, WHILE_P
from ppinv.rules import DEFAULT_RULES

ROOT = pathlib.Path(ppinv.__file__).parent
EXPERIMENTS = ROOT.parent / "experiments"
SPLIT = ["_block", "_piecewise", "rules/control", "rules/structural", "strategies",
         "_poly", "_monotone", "geometry", "infer/_start", "joint/chain"]
# modules that kept their path and gave parts of their job to new modules beside them
SHRUNK = ["infer/hmc.py", "infer/_hmc_state.py", "infer/_discrete.py"]
SHRUNK_EXPERIMENTS = ["overhead", "overhead_overlay", "overhead_build", "overhead_report",
                      "compare", "compare_specs", "compare_runs", "compare_checks"]
MAX_LINES = 400


def _modules():
    split = [p for d in SPLIT for p in (ROOT / d).glob("*.py")]
    shrunk = [ROOT / m for m in SHRUNK] + [EXPERIMENTS / f"{m}.py" for m in SHRUNK_EXPERIMENTS]
    return sorted(split + shrunk)


def _name(path):
    return str(path.relative_to(ROOT.parent))


def test_every_split_package_is_a_package():
    for d in SPLIT:
        assert (ROOT / d / "__init__.py").is_file(), d
        assert not (ROOT / f"{d}.py").exists(), f"{d}.py and {d}/ would shadow each other"


@pytest.mark.parametrize("path", _modules(), ids=_name)
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
    "ppinv._poly": ["poly_degree", "cone_degree", "worth_solving", "Degree", "PolynomialBlock", "MAX_DEGREE",
                    "Rational", "default_rationals", "padd", "pmul", "ppow"],
    "ppinv._monotone": ["derivative_sign", "MonotoneBlock", "is_elementwise_analytic", "unary_jet",
                        "monotone_bounds", "default_jets", "_add", "_mul", "_power_bounds", "_table", "_subdivisions"],
    "ppinv.geometry": ["GeometryFeature", "StuckBranch", "GeometryReport", "geometry_report", "solve_margins",
                       "static_features"],
    "ppinv.infer._start": ["pgf_initial_values", "StartRule", "start_point", "pick_start", "raise_if_no_valid_start",
                           "BRANCH_LOG_DENSITY_GAP", "_latent_start", "_prior_plan"],
    "ppinv.infer.hmc": ["InverseHMC", "InverseNUTS", "InverseHMCState", "discrete_sweep"],
    "ppinv.joint.chain": ["PlanarChains", "ChainBlock"],
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_old_import_paths_still_work(module):
    mod = importlib.import_module(module)
    missing = [n for n in OLD_PATHS[module] if not hasattr(mod, n)]
    assert not missing


def test_every_module_keeps_its_public_names():
    for module in ("ppinv._poly", "ppinv._monotone", "ppinv.geometry", "ppinv.infer._start", "ppinv.infer.hmc"):
        mod = importlib.import_module(module)
        assert set(mod.__all__) <= set(OLD_PATHS[module]), module
        assert all(hasattr(mod, n) for n in mod.__all__), module


def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"ppinv_layout_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# names other scripts and tests read from the experiment scripts (theta_choice.py: SPECS;
# lv_gradient_cost.py: the hand-written inverses; the smoke tests: main and PROGRAMS)
SCRIPT_NAMES = {
    "overhead": ["main", "PROGRAMS"],
    "compare": ["main", "SPECS", "methods_for", "config", "hand_lotka_volterra", "hand_bilinear"],
}


@pytest.mark.parametrize("script", sorted(SCRIPT_NAMES))
def test_experiment_scripts_keep_the_names_others_read(script):
    mod = _load_script(script)
    assert [n for n in SCRIPT_NAMES[script] if not hasattr(mod, n)] == []


def test_which_calls_stay_whole_is_decided_in_one_place():
    """The importer keeps a call whole when the table has a function rule for it: one definition,
    read by the inverse and by the bodies of control flow."""
    from ppinv.rules import table
    from ppinv.rules.control import bodies

    inverse_module = importlib.import_module("ppinv.inverse")  # ppinv.inverse is also the function
    assert inverse_module._keep_call is table.keep_call
    assert bodies.keep_call is table.keep_call
    source = "".join(p.read_text() for p in ROOT.rglob("*.py"))
    assert source.count("def keep_call(") + source.count("def _keep_call(") == 1


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
