"""The documentation builds without warnings, and every docstring example runs."""

import doctest
import importlib
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

PUBLIC_MODULES = [
    "ppinv.inverse", "ppinv.custom", "ppinv.rules", "ppinv.rules.table", "ppinv.rules._base", "ppinv.testing.inverses",
    "ppinv.conditioning.model", "ppinv.joint", "ppinv.diagnostics", "ppinv.theta", "ppinv.infer.hmc", "ppinv.infer.mh",
]


def test_sphinx_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    # In a subprocess: Sphinx's own deprecation warnings must not become test errors.
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-b", "html",
                           str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    gallery = (tmp_path / "html" / "gallery.html").read_text()
    assert "models/lotka_volterra.py" in gallery and ".png" in gallery
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("ppinv.inverse", "ppinv.condition", "InverseNUTS", "check_inverse"):
        assert name in api


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_docstring_examples_run(module):
    from ppinv.rules import _USER_RULES

    mod = importlib.import_module(module)
    before = {p: list(rs) for p, rs in _USER_RULES._rules.items()}
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    # An example that leaves a global rule behind breaks every later test of that primitive
    # (its closures refer to the example's namespace, which doctest clears).
    assert {p: list(rs) for p, rs in _USER_RULES._rules.items()} == before
