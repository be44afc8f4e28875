"""The machine record every experiment script writes beside its results."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return "unknown"


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # pragma: no cover
        return ""


def _version(dist: str):
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, cores, load, library versions, JAX device and the ppinv commit, now."""
    import jax

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return dict(
        cpu=_cpu_model(),
        logical_cores=os.cpu_count(),
        usable_cores=usable,
        platform=platform.platform(),
        python=platform.python_version(),
        jax=jax.__version__,
        jaxlib=_version("jaxlib"),
        numpyro=_version("numpyro"),
        numpy=_version("numpy"),
        mici=_version("mici"),
        pyabc=_version("pyabc"),
        jax_backend=jax.default_backend(),
        device=str(jax.devices()[0]),
        ppinv_commit=_git("rev-parse", "--short", "HEAD"),
        ppinv_dirty=bool(_git("status", "--porcelain", "--", "ppinv")),
        malloc_env={k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
        loadavg_start=load,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
