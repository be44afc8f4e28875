"""Smoke tests of the experiment scripts (experiments/*.py) at their --quick sizes.

The default tier runs the overhead script (every output file, the overlay and build
tables); the sampling benchmarks take minutes of CPU even at their quick sizes and
run in the slow tier (``-m slow``)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_overhead_quick(tmp_path):
    overhead = _load("ppinv_experiments_overhead", ROOT / "experiments" / "overhead.py")
    result = overhead.main(["--quick", "--out", str(tmp_path)])
    for name in ("overhead_quick.json", "overhead_overlay_quick.csv", "overhead_build_quick.csv",
                 "overhead_build_quick.png", "overhead_summary_quick.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "overhead_quick.json").read_text())
    assert [r["program"] for r in saved["overlay"]] == [p["name"] for p in overhead.PROGRAMS]
    assert all(r["overlay_ms"] > 0 and r["hand_ms"] > 0 for r in result["overlay"])
    assert [s["n_eqns"] for s in saved["build_summary"]] == [10, 100]
    assert all(s["median"]["total_s"] > 0 for s in saved["build_summary"])


@pytest.mark.slow
def test_compare_quick(tmp_path):
    """experiments/compare.py --quick on one small model: ppinv beside soft NUTS, every output written."""
    compare = _load("ppinv_experiments_compare", ROOT / "experiments" / "compare.py")
    result = compare.main(["--quick", "--models", "product_lognormal", "--methods", "ppinv,soft_0.1",
                           "--out", str(tmp_path), "--no-progress"])
    for name in ("compare_quick.json", "compare_quick.csv", "compare_summary_quick.csv", "compare_quick.md",
                 "compare_ess_quick.png", "manifold_quick.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "compare_quick.json").read_text())
    assert saved["machine"]["jax"] and saved["machine"]["cpu"]
    by = {s["method"]: s for s in result["summary"]}
    assert set(by) == {"ppinv", "soft_0.1"}
    assert all(s["repeats"] == 1 and s["ess_per_s"] > 0 and s["wall_s"] > 0 for s in by.values())
    assert by["ppinv"]["violation"] <= 1e-9 < 1e-3 <= by["soft_0.1"]["violation"]


@pytest.mark.slow
def test_scaling_quick(tmp_path):
    """experiments/scaling.py --quick: batched inverse and vectorized chains, every output written."""
    scaling = _load("ppinv_experiments_scaling", ROOT / "experiments" / "scaling.py")
    result = scaling.main(["--quick", "--out", str(tmp_path)])
    for name in ("scaling_quick.json", "scaling_inverse_quick.csv", "scaling_chains_quick.csv", "scaling_quick.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert all(r["evals_per_s"] > 0 for r in result["inverse"])
    assert [r["chains"] for r in result["chains"]] == [1, 4]


@pytest.mark.slow
def test_sum_parametrisation_quick(tmp_path):
    """experiments/sum_parametrisation.py --quick: both θ choices sample exactly, results written."""
    sp = _load("ppinv_experiments_sum_parametrisation", ROOT / "experiments" / "sum_parametrisation.py")
    result = sp.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "sum_parametrisation_quick.json").stat().st_size > 0
    assert set(result["summary"]) == {"simplex", "naive"}
    assert all(s["violation"] <= 1e-9 and s["ess_per_s"] > 0 for s in result["summary"].values())
    assert result["summary"]["simplex"]["divergences"] == 0  # solved values never leave their support


@pytest.mark.slow
def test_lv_gradient_cost(tmp_path):
    """experiments/lv_gradient_cost.py: the three potential+gradient timings, written."""
    lv = _load("ppinv_experiments_lv_gradient_cost", ROOT / "experiments" / "lv_gradient_cost.py")
    summary = lv.main(["--repeats", "1", "--out", str(tmp_path)])
    assert (tmp_path / "lv_gradient_cost.json").stat().st_size > 0
    assert set(summary) == {"hand-written", "ppinv", "ppinv, steps in sequence"}
    assert all(v > 0 for v in summary.values())
