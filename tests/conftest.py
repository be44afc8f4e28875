"""Test configuration: float64, CPU, fixed seeds; warnings are errors (pyproject)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's trace and compile caches after each module: keeps the suite's peak memory flat."""
    yield
    jax.clear_caches()


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
            }) + "\n")
