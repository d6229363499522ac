"""The input trees both Sprocket and tesengine stage, built the same way every time.

Digests depend only on names, bytes and shape (not on times or modes), so
the vectors Sprocket computed for these trees once (``sprocket_vectors.json``)
hold on every machine. ``wide`` has 1,000 entries at full size and 100 in
the quick run (its vector is recorded for both).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Names that sort differently as bytes (UTF-8, what both digests use) and as
#: text: ASCII case (B < a), and an astral character (U+1F600, F0 9F 98 80)
#: after U+FF21 (EF BC A1) in UTF-8 but before it in UTF-16 code units.
ORDER_NAMES = ("B.txt", "a.txt", "\uff21.txt", "\U0001f600.txt", "-dash", ".hidden", "~tilde")


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def nested(root: Path) -> Path:
    """Directories inside directories."""
    _write(root / "a" / "b" / "c" / "deep.txt", "deep\n")
    _write(root / "a" / "top.txt", "top\n")
    _write(root / "a" / "b" / "mid.bin", bytes(range(256)) * 4)
    _write(root / "z.txt", "z\n")
    return root


def empties(root: Path) -> Path:
    """Empty files and empty directories, nested too."""
    _write(root / "empty.txt", b"")
    (root / "emptydir").mkdir(parents=True)
    (root / "sub" / "emptier").mkdir(parents=True)
    _write(root / "sub" / "also-empty", b"")
    _write(root / "sub" / "one.txt", "1")
    return root


def names(root: Path) -> Path:
    """Unicode and space-containing names, and names whose byte and text orders differ."""
    _write(root / "with space.txt", "space\n")
    _write(root / "dir with space" / "inner file.txt", "inner\n")
    _write(root / "\u00fcn\u00efc\u00f8d\u00e9.txt", "unicode\n")
    _write(root / "\u65e5\u672c\u8a9e" / "\u30d5\u30a1\u30a4\u30eb.txt", "nihongo\n")
    for index, name in enumerate(ORDER_NAMES):
        _write(root / name, f"{index}\n")
    return root


def wide(root: Path, entries: int) -> Path:
    """One directory with ``entries`` files."""
    root.mkdir(parents=True)
    for index in range(entries):
        (root / f"f{index:04d}.txt").write_text(f"{index}\n")
    return root


def dir_links(root: Path) -> Path:
    """A symlink to a directory (inside the tree) beside the directory itself."""
    _write(root / "real" / "x.txt", "x\n")
    _write(root / "real" / "deeper" / "y.txt", "y\n")
    os.symlink("real", root / "link-to-dir")
    return root


def file_links(root: Path) -> Path:
    """A symlink to a file and a broken symlink inside a directory."""
    _write(root / "file.txt", "target\n")
    os.symlink("file.txt", root / "link-to-file")
    os.symlink("does-not-exist", root / "broken")
    return root


def build(base: Path, *, full: bool) -> dict[str, Path]:
    """Every tree under ``base``, by name (the name is the tree's folder name)."""
    base.mkdir(parents=True, exist_ok=True)
    return {
        "nested": nested(base / "nested"),
        "empties": empties(base / "empties"),
        "names": names(base / "names"),
        f"wide{1000 if full else 100}": wide(
            base / f"wide{1000 if full else 100}", 1000 if full else 100
        ),
        "dir_links": dir_links(base / "dir_links"),
        "file_links": file_links(base / "file_links"),
    }


def files(base: Path) -> dict[str, Path]:
    """Single-file inputs: plain, empty, a unicode name with a space, a symlink to a file."""
    base.mkdir(parents=True, exist_ok=True)
    plain = base / "plain.txt"
    _write(plain, "plain\n")
    _write(base / "empty-file", b"")
    _write(base / "\u00fcber file.txt", "\u00fcber\n")
    os.symlink("plain.txt", base / "file-symlink")
    return {
        p.name: p
        for p in (plain, base / "empty-file", base / "\u00fcber file.txt", base / "file-symlink")
    }
