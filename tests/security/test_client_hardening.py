"""The client against hostile inputs and hostile servers: it fails safely and lives.

- an input truncated while it is hashed (memory-mapped: SIGBUS) is InputChanged;
- a TES server that trickles its answer, or sends a huge one, is cut off;
- a task whose outputs point outside the backend's ``outputs`` prefix is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import user_env, wait_until

GIB = 1 << 30

_EMBEDDER = """
import asyncio, sys
from tesengine.digest import Digester
from tesengine.errors import InputChanged

async def main() -> int:
    async with Digester(cache=False) as digester:
        try:
            digest = await digester.digest(sys.argv[1])
        except InputChanged as exc:
            print("InputChanged:", exc, flush=True)
            return 0
    print("no error:", digest.hex, flush=True)
    return 1

sys.exit(asyncio.run(main()))
"""


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parents[int(entry)] = int(fh.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.update(children)
        frontier.extend(children)
    return found


def _maps(pid: int, path: Path) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return str(path) in fh.read()
    except OSError:
        return False


def _mapped_under(root: int, path: Path) -> list[int]:
    """The processes of ``root``'s tree that have ``path`` memory-mapped now."""
    return [pid for pid in _descendants(root) if _maps(pid, path)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see the mapping")
def test_input_truncated_while_mapped_is_input_changed_and_the_process_lives(
    tmp_path: Path,
) -> None:
    """A real file, truncated the moment it is memory-mapped for hashing.

    A sparse 32 GiB file takes seconds to hash, so the truncation, made as soon
    as a process of the embedding program's tree has it mapped, lands while
    it is hashed. Before the fix the embedding process itself mapped it and
    died of SIGBUS (exit -7); now a worker process maps it and dies instead.
    """
    victim = tmp_path / "input.bin"
    with victim.open("wb") as fh:
        fh.truncate(32 * GIB)  # sparse: no disk space, no time
    embedder = subprocess.Popen(
        [sys.executable, "-c", _EMBEDDER, str(victim)],
        env=user_env(tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: bool(_mapped_under(embedder.pid, victim)) or embedder.poll() is not None,
            timeout=30,
            what="the input to be memory-mapped",
        )
        mappers = _mapped_under(embedder.pid, victim)
        os.truncate(victim, 0)
        out, err = embedder.communicate(timeout=60)
    finally:
        if embedder.poll() is None:
            embedder.kill()
            embedder.wait()
    assert mappers, f"nothing mapped the input: {out!r} {err!r}"
    assert embedder.returncode == 0, (embedder.returncode, out, err)
    assert embedder.pid not in mappers  # the embedding process never maps an input
    assert b"InputChanged:" in out
    assert b"input.bin: file shrank from 34359738368 to 0 bytes" in out
    assert b"Traceback" not in err
