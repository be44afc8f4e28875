"""The former home of ppinv's program view; it lives in :mod:`ppinv.ir` now (this name is kept
for the modules and user code that import it)."""

from .ir import *  # noqa: F401,F403
from .ir import _body_of, _const  # noqa: F401
