"""Smoke test of the overhead benchmark (experiments/overhead.py) at its --quick sizes."""

import importlib.util
import json
from pathlib import Path

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
