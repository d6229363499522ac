"""The reference for parity: miniwdl running each task straight on this host.

Neither Docker nor ``miniwdl-backend-bare`` is available where tesengine is
tested, so this is the host backend: miniwdl's own input mapping and copying
(``container_dir`` is the host run directory), and the command run as its
CLI backends run it (``bash ../command >> ../stdout.txt 2>> ../stderr.txt``
in the work directory). Run as a script it is ``miniwdl`` with this backend
registered as ``host``::

    python tests/wdl/host_backend.py run wf.wdl ... (MINIWDL__SCHEDULER__CONTAINER_BACKEND=host)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from WDL.runtime.error import Terminated
from WDL.runtime.task_container import TaskContainer


class HostContainer(TaskContainer):
    """Runs the task command as a plain subprocess in the host work directory."""

    @classmethod
    def global_init(cls, cfg: Any, logger: logging.Logger) -> None:
        pass

    @classmethod
    def detect_resource_limits(cls, cfg: Any, logger: logging.Logger) -> dict[str, int]:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return {"cpu": os.cpu_count() or 1, "mem_bytes": pages}

    def __init__(self, cfg: Any, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        self.container_dir = host_dir  # no container: its paths are the host's

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        self.copy_input_files(logger)
        with open(os.path.join(self.host_dir, "command"), "w") as script:
            script.write(command)
        env = {**os.environ, **self.runtime_values.get("env", {})}
        proc = subprocess.Popen(
            ["bash", "-c", "bash ../command >> ../stdout.txt 2>> ../stderr.txt"],
            cwd=self.host_work_dir(),
            env=env,
        )
        while True:
            try:
                return proc.wait(0.2)
            except subprocess.TimeoutExpired:
                if terminating():
                    proc.kill()
                    raise Terminated() from None


def main() -> None:
    """``miniwdl`` with the host backend registered (skips plugin discovery for backends)."""
    import WDL.CLI
    from WDL.runtime import task_container

    task_container._backends["host"] = HostContainer
    sys.exit(WDL.CLI.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
