"""``tesengine run`` progress as users see it: on a terminal (a real pty), and piped.

The runs use the embedded default (no configuration) in a fresh cache home.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.support import run_cli, user_env, wait_until
from tests.test_cli_embedded import running

COLUMNS = 72
LONG = "a-task-with-a-name-much-longer-than-the-terminal-is-wide-" * 3
# CSI sequences (colours, cursor moves, erase) and the cursor show/hide ones.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def task_file(tmp_path: Path, seconds: float, count: int = 3) -> Path:
    path = tmp_path / "tasks.toml"
    (tmp_path / "data.txt").write_text("some input bytes\n" * 1000)
    path.write_text(
        "".join(
            f'[[tasks]]\nname = "{LONG}{i}"\ncommand = ["sleep", "{seconds}"]\n'
            'inputs = { "/in/data.txt" = "data.txt" }\n\n'
            for i in range(count)
        )
    )
    return path


class Terminal:
    """``tesengine ARGS`` with stderr (and stdin) on a pty of COLUMNS columns."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
        env = {**user_env(tmp_path / "cache"), "TERM": "xterm-256color", "COLUMNS": str(COLUMNS)}
        self.stdout = tmp_path / "stdout.txt"
        with self.stdout.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tesengine", *args],
                cwd=tmp_path, env=env, stdin=follower, stdout=out, stderr=follower,
            )  # fmt: skip
        os.close(follower)

    def finish(self) -> tuple[int, str]:
        """Read until the process closes the terminal; (exit status, what it showed)."""
        chunks = []
        while True:
            try:
                data = os.read(self.leader, 65536)
            except OSError:  # EIO once every writer has closed the pty
                break
            if not data:
                break
            chunks.append(data)
        os.close(self.leader)
        return self.proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def live_frames(shown: str) -> list[str]:
    """Every redraw of the live lines, escape sequences removed."""
    plain = ANSI.sub("", shown)
    return [part for part in re.split(r"[\r\n]", plain) if part.startswith(("tasks ", "inputs:"))]


def test_terminal_progress_counts_bar_eta_and_summary(tmp_path: Path) -> None:
    term = Terminal(tmp_path, "run", "--file", str(task_file(tmp_path, 0.5)))
    status, shown = term.finish()
    assert status == 0, shown
    frames = live_frames(shown)
    task_lines = [f for f in frames if f.startswith("tasks ")]
    assert any("━" in f and " 0/3 " in f for f in task_lines)
    assert any(" 3/3 " in f and "3 complete" in f for f in task_lines)
    assert all(" eta " in f for f in task_lines)
    assert any("running" in f for f in task_lines)
    byte_lines = [f for f in frames if f.startswith("inputs:")]
    assert any(re.search(r"[1-9][\d.]* kB hashed", f) for f in byte_lines), byte_lines[-3:]
    assert all("uploaded" in f and "skipped" in f for f in byte_lines)
    # Long task names never reach the live lines, and they never wrap.
    assert all(len(f) <= COLUMNS for f in frames), max(frames, key=len)
    assert not any(LONG in f for f in frames)
    summary = [line for line in ANSI.sub("", shown).splitlines() if "3 tasks:" in line]
    assert len(summary) == 1
    # The three tasks share one 17 kB input: one object, uploaded once (the other two
    # tasks wait for that upload); nothing was in storage before.
    assert re.fullmatch(
        r"tesengine: 3 tasks: 3 complete; \d+\.\d s; inputs 17\.0 kB uploaded,"
        r" 0 bytes deduplicated\r?",
        summary[0],
    )
    assert f"{LONG}0: COMPLETE" in term.stdout.read_text()  # results stay on stdout


def test_ctrl_c_clears_the_line_and_says_how_many_were_cancelled(tmp_path: Path) -> None:
    term = Terminal(tmp_path, "run", "--file", str(task_file(tmp_path, 60, count=2)))
    try:
        wait_until(lambda: running(tmp_path, LONG) is not None, what="a task RUNNING")
        term.proc.send_signal(signal.SIGINT)
        status, shown = term.finish()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()
    assert status == 130, shown
    assert "Traceback" not in shown
    # The live lines are erased (cursor up + erase line), then the message starts
    # at column 0 and every line ends: the cursor is left on a fresh line.
    tail = shown[shown.rindex("\x1b[?25h") :]
    assert "\x1b[2K" in tail
    after = ANSI.sub("", tail).lstrip("\r")
    assert after.startswith("tesengine: cancelled 2 tasks\r\n"), repr(after)
    assert shown.endswith("\n")


def piped_run(tmp_path: Path, tasks: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("run", "--file", str(tasks), cwd=tmp_path)


def test_piped_progress_is_plain_lines(tmp_path: Path) -> None:
    tasks = task_file(tmp_path, 0.1, 2)
    result = piped_run(tmp_path, tasks)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert sum(line.startswith("submitted ") for line in lines) == 2
    assert any(line.endswith(": COMPLETE") for line in lines)
    assert re.match(
        r"tesengine: 2 tasks: 2 complete; \d+\.\d s; inputs 17\.0 kB uploaded", lines[-1]
    )
    again = piped_run(tmp_path, tasks)  # the input is stored already: nothing uploaded
    assert again.returncode == 0, again.stderr
    # One object both tasks share, found present once: its bytes count once.
    assert again.stderr.splitlines()[-1].endswith("inputs 0 bytes uploaded, 17.0 kB deduplicated")
