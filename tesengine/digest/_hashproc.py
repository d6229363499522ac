"""Worker process that hashes files for the digester (run as a script, not imported).

It imports only the standard library and blake3, so it starts in ~10 ms.
The parent (:mod:`.procs`) writes requests to its stdin and reads replies
from its stdout; each message is a u32 LE length and a ``marshal`` payload
(both ends are the same interpreter). A request is ``(kind, paths, stats)``
with five stat fields per path (dev, ino, size, mtime_ns, ctime_ns):

- ``READ``: a batch of small files, each read whole;
- ``MAP``: one large file, memory-mapped and hashed on several threads.

The reply holds, per path, the 32 digest bytes, or None when the file
could not be read or no longer matches its stat. The parent then hashes
that file itself, which reports errors and retries changes the usual way.

Large files are mapped here and not in the parent because a mapped file
that another process truncates makes the kernel send SIGBUS on the next
access to a page past the new end, and SIGBUS kills the process: this one,
which the parent notices as a closed pipe, instead of the program that
embeds tesengine.

End of input (the parent closed the pipe or died) ends the process.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

from blake3 import blake3

READ = 0
MAP = 1
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_PROC_FD = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")


def hash_batch(paths: list[str], stats: list[int]) -> list[bytes | None]:
    """The digests of ``paths``, each checked against its five stat fields."""
    out: list[bytes | None] = []
    put = out.append
    for i, path in enumerate(paths):
        expected = tuple(stats[5 * i : 5 * i + 5])
        try:
            fd = os.open(path, _FLAGS)
            try:
                data = os.read(fd, expected[2])
                st = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError:
            put(None)
            continue
        now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        put(blake3(data).digest() if now == expected and len(data) == expected[2] else None)
    return out


def hash_mapped(path: str, stats: list[int]) -> bytes | None:
    """The digest of one large file, mapped; None unless it matches ``stats`` throughout."""
    expected = tuple(stats)
    try:
        fd = os.open(path, _FLAGS)
    except OSError:
        return None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or _fields(before) != expected:
            return None  # never map what the parent did not stat (a FIFO would block)
        hasher = blake3(max_threads=blake3.AUTO)
        # Mapping through /proc keeps us on the inode we opened and checked.
        hasher.update_mmap(f"/proc/self/fd/{fd}" if _PROC_FD else path)
        after = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return hasher.digest() if _fields(after) == expected else None


def _fields(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def handle(kind: int, paths: list[str], stats: list[int]) -> list[bytes | None]:
    """The reply to one request."""
    if kind == MAP:
        return [hash_mapped(paths[0], stats[:5])]
    return hash_batch(paths, stats)


def read_exact(fd: int, n: int) -> bytes | None:
    """Exactly ``n`` bytes from ``fd``; None at end of input."""
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> int:
    """Serve requests until end of input."""
    while (head := read_exact(0, 4)) is not None:
        body = read_exact(0, int.from_bytes(head, "little"))
        if body is None:
            break
        kind, paths, stats = marshal.loads(body)  # noqa: S302 - only our parent writes here
        reply = marshal.dumps(handle(kind, paths, stats))
        write_all(1, len(reply).to_bytes(4, "little") + reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
