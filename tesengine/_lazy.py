"""PEP 562 lazy re-exports: the one way a package door stays cheap to import.

A package lists ``name -> defining module`` and gets a module
``__getattr__`` that imports the module on first use and caches the value
in the package's namespace (so later look-ups never come back here)::

    __getattr__, __dir__ = lazy_exports(__name__, {"Storage": ".ops"}, __all__)

This module imports nothing at load time (not even :mod:`typing` or
:mod:`importlib` or :mod:`__future__`): ``import tesengine`` loads it and
must stay cheap, so the annotations that name typing-only types are strings.
"""

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any


def lazy_exports(
    package: str,
    exports: "Mapping[str, str]",
    public: "Sequence[str]",
    computed: "Mapping[str, Callable[[], object]] | None" = None,
) -> "tuple[Callable[[str], Any], Callable[[], list[str]]]":
    """The ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``.

    Module paths in ``exports`` are relative to ``package`` (``.ops``,
    ``..auth``) or absolute. A name in ``computed`` is the value its function
    returns instead (``__version__``, read from package metadata on first use).
    """
    compute = computed or {}

    def getattr_(name: str) -> "Any":
        if name in compute:
            value = compute[name]()
        elif name in exports:
            from importlib import import_module

            value = getattr(import_module(exports[name], package), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return getattr_, dir_
