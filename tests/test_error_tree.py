"""The one exception tree: every error is drawn in errors.py's docstring, none raised bare."""

from __future__ import annotations

import re
from pathlib import Path

import tesengine
from tesengine import errors

PACKAGE = Path(tesengine.__file__).parent


def _classes() -> list[type[errors.TesEngineError]]:
    found = [getattr(errors, name) for name in errors.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, errors.TesEngineError)]


def test_every_error_is_drawn_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    depth = {m.group(2): len(m.group(1)) for m in re.finditer(r"^([ │├└─]*)(\w+)\s", doc, re.M)}
    for cls in _classes():
        assert cls.__name__ in depth, f"{cls.__name__} is not drawn in the tree"
        if cls is not errors.TesEngineError:
            parent = cls.__mro__[1].__name__
            assert depth[cls.__name__] > depth[parent], f"{cls.__name__} not under {parent}"


def test_no_module_raises_the_bare_base_class() -> None:
    bare = re.compile(r"raise TesEngineError\(")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert offenders == []


def test_every_public_error_class_lives_in_the_tree() -> None:
    # The command line's own errors (usage, not-run) never reach an embedder.
    names = "|".join(c.__name__ for c in _classes())
    public = re.compile(rf"^class ([A-Z]\w*)\((?:\w+\.)?(?:{names})\)", re.M)
    outside = [
        f"{path.relative_to(PACKAGE)}: {match.group(1)}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "errors.py" and "cli" not in path.relative_to(PACKAGE).parts
        for match in public.finditer(path.read_text(encoding="utf-8"))
    ]
    assert outside == []
