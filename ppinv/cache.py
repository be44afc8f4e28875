"""An opt-in persistent compilation cache: the second run of a script compiles (almost) nothing.

Most of the wall time of a short ppinv run is XLA compilation (the kernel's
start-up, NumPyro's sampling loop, the post-processing). JAX can keep compiled
programs on disk and reuse them in later processes; this turns that on with
settings that suit ppinv's programs::

    import ppinv
    ppinv.enable_compilation_cache()          # ~/.cache/ppinv/jax, or a path of your choice

The same recipe without ppinv (before the first compilation, or in the
environment)::

    jax.config.update("jax_compilation_cache_dir", path)          # JAX_COMPILATION_CACHE_DIR
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

A program is found again when it is the same program (same model, shapes,
dtypes and settings) compiled by the same JAX/jaxlib on the same kind of
device. The cache directory is trusted code: do not share it with users you
do not trust (JAX's warning).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ppinv/jax`` (``~/.cache/ppinv/jax`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ppinv" / "jax"


def enable_compilation_cache(path=None, *, min_compile_time_secs: float = 0.0, min_entry_size_bytes: int = -1) -> Path:
    """Keep JAX's compiled programs in ``path`` and reuse them in later processes.

    Parameters
    ----------
    path:
        Cache directory (created if missing); default :func:`default_cache_dir`.
    min_compile_time_secs:
        Programs that compiled faster than this are not stored. JAX's default
        (1 s) would skip most of a small model's programs, whose compile times
        add up all the same; reading an entry back takes milliseconds.
    min_entry_size_bytes:
        Programs smaller than this are not stored (−1: no minimum).

    Returns
    -------
    pathlib.Path
        The cache directory.

    Notes
    -----
    It takes effect for compilations from now on, also after earlier ones in
    this process (JAX's cache is re-initialised at the new directory).

    Examples
    --------
    At the top of a script (it changes JAX's settings for the whole process)::

        import ppinv
        ppinv.enable_compilation_cache()      # later runs of this script reuse its programs
    """
    from jax.experimental.compilation_cache import compilation_cache

    where = Path(path) if path is not None else default_cache_dir()
    where.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes))
    compilation_cache.reset_cache()  # so that a cache already initialised (or found unused) re-reads the settings
    return where
