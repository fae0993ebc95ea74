"""The benchmark-only dependencies: say what is missing, and how to install it, up front."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

__all__ = ["INSTALL_HINT", "missing_modules"]

INSTALL_HINT = ".venv/bin/pip install -r benchmarks/requirements.txt"
# Import name -> what pip installs (they differ for none today, but they could).
_ALWAYS = ("psutil", "matplotlib", "polars", "pyarrow", "aiohttp")


def missing_modules(extra: Iterable[str]) -> list[str]:
    """Modules among the harness's own and ``extra`` that cannot be imported."""
    wanted = dict.fromkeys((*_ALWAYS, *extra))
    return [name for name in wanted if importlib.util.find_spec(name) is None]
