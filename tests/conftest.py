"""Test configuration: float64, CPU, fixed seeds; warnings are errors (pyproject)."""

import ctypes
import gc
import os
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Two host devices for the parallel-chain tests. Compiling dominates the suite (hundreds of small
# programs, each run a few times), so XLA is asked to compile fast: its classic CPU emitters (the
# newer fusion emitters take ~3x longer to compile the suite's programs) and no LLVM optimisation
# passes. Both change how fast the emitted code runs, not what it computes (no fast-math either way).
_BASE_FLAGS = "--xla_force_host_platform_device_count=2"
_FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flags):
    """Whether this jaxlib knows ``flags`` (XLA aborts the process on an unknown flag)."""
    probe = "import jax, jax.numpy as jnp; jnp.ones(2).block_until_ready()"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


if "XLA_FLAGS" not in os.environ:  # set once, by the first process; pytest-xdist workers inherit it
    _fast = f"{_BASE_FLAGS} {_FAST_COMPILE_FLAGS}"
    os.environ["XLA_FLAGS"] = _fast if _xla_accepts(_fast) else _BASE_FLAGS

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    yield


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def _resident_mb():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: no budget check
        return 0.0


def _release_memory():
    """Drop JAX's trace and compile caches and hand freed memory back to the system."""
    jax.clear_caches()
    gc.collect()
    try:  # glibc keeps freed arenas mapped; without this the resident size never falls
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# Compiled programs accumulate in JAX's caches as tests build new inverses; past this many MB
# resident they are dropped after the test (a later test recompiles what it needs). Keeps the
# default tier's peak memory within its 2 GB budget at little cost in time.
# The budget is shared by the test processes (pytest-xdist workers run side by side).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
MEMORY_BUDGET_MB = float(os.environ.get("PPINV_TEST_MEMORY_MB", "1200" if _WORKERS == 1 else "750"))


@pytest.fixture(autouse=True)
def _stay_within_memory_budget():
    yield
    if _resident_mb() > MEMORY_BUDGET_MB:
        _release_memory()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's caches after each module: its programs are not used again."""
    yield
    _release_memory()


# PPINV_TEST_PROFILE=path: one JSON line per test (duration, resident memory after it, peak so far),
# to keep the default tier within its time and memory budget (see README, "Tests").
_PROFILE = os.environ.get("PPINV_TEST_PROFILE")
if _PROFILE:
    import json
    import resource
    import time

    def _rss_mb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        start = time.perf_counter()
        cpu = time.process_time()
        yield
        with open(_PROFILE, "a") as fh:
            fh.write(json.dumps({
                "test": item.nodeid, "wall_s": round(time.perf_counter() - start, 3),
                "cpu_s": round(time.process_time() - cpu, 3), "rss_mb": round(_rss_mb()),
                "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            }) + "\n")
