"""The former home of the graph walks; they live in :mod:`ppinv.ir.graph` now (this name is kept
for the modules that import it)."""

from .ir.graph import ancestors, backward_slice, inputs_from_outside  # noqa: F401
