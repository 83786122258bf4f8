"""Optional dependencies, grouped into the extras of ``pyproject.toml``.

Inference (``midlevel predict``/``explain``/``models``, ``midlevel.load(...).explain(...)``) needs only the core
dependencies. Every other feature imports its extra's modules when it is used, after ``require`` (or
``require_all``) has checked that they are there, so a missing one is reported in one line that names the extra:
"<feature> needs the '<extra>' extra: pip install 'midlevel[<extra>]'".
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingExtraError


def _missing(extra: str, feature: str, module: str) -> MissingExtraError:
    return MissingExtraError(f"{feature} needs the '{extra}' extra: pip install 'midlevel[{extra}]'", name=module)


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import and return ``module``, or raise ``MissingExtraError`` if it (or its package) is not installed.
    Any other import failure (a broken installation) propagates unchanged."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:  # also raised for a module blocked by sys.modules[name] = None
        if not exc.name or not (module == exc.name or module.startswith(exc.name + ".")):
            raise  # the module is there but something it imports is not
        raise _missing(extra, feature, exc.name) from None


def require_all(modules: tuple[str, ...] | list[str], extra: str, feature: str) -> None:
    """Raise ``MissingExtraError`` unless every top-level package in ``modules`` is installed; imports none of
    them (a cheap check at the entry of a feature, before any work)."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None  # None also for sys.modules[name] = None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise _missing(extra, feature, module)
