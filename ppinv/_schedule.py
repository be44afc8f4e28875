"""Transitional alias of :mod:`ppinv.schedule` (the plan and its search)."""

from .schedule import *  # noqa: F401,F403
from .schedule import __all__  # noqa: F401
