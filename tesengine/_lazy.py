"""PEP 562 lazy re-exports: the one way a package door stays cheap to import.

A package lists ``name -> defining module`` and gets a module
``__getattr__`` that imports the module on first use and caches the value
in the package's namespace (so later look-ups never come back here)::

    __getattr__, __dir__ = lazy_exports(__name__, {"Storage": ".ops"}, __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``.

    Module paths in ``exports`` are relative to ``package`` (``.ops``,
    ``..auth``) or absolute.
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return getattr_, dir_
