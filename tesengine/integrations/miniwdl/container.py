"""``TesTaskContainer``: miniwdl's TaskContainer running each task as one TES task.

The TES task has one executor: ``bash`` writes the command to
``<container_dir>/command`` and runs it in ``<container_dir>/work`` with stdout
and stderr redirected to ``<container_dir>/std{out,err}.txt``, as miniwdl's
own backends do. Its one output is that container directory (never empty, so
every server delivers it), under the engine's unique per-execution prefix;
once the task is COMPLETE, stdout.txt, stderr.txt and work/ are downloaded
into the host run directory, where miniwdl evaluates the WDL outputs (globs,
``read_*``). Empty directories inside work/ are not carried by object storage.

Inputs are staged by content address through the shared backend (see
:mod:`tesengine.blocking`); a host file that is an earlier task's download
is passed as its URL instead (see :class:`.paths.UrlMemory`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import WDL
from WDL.runtime.error import Interrupted, Terminated
from WDL.runtime.task_container import TaskContainer

from ... import (
    Executor,
    RemoteDirectory,
    RemoteFile,
    Resources,
    Task,
    TaskFailed,
    TaskResult,
    TaskRun,
    TesEngineError,
)
from ...blocking import Backend
from ...storage import join_url
from .paths import UrlMemory, map_inputs
from .settings import Settings
from .transfer import Fetch, fetch_outputs, read_small

log = logging.getLogger("tesengine.miniwdl")

#: A command longer than this goes in as a staged file, not as an argument
#: (the kernel refuses one argument over 128 KiB).
MAX_INLINE_COMMAND = 96 * 1024
EXIT_CODE_FILE = "exit_code"
_WAIT = 0.5  # seconds between looks at miniwdl's termination flag
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class TesTaskContainer(TaskContainer):
    """Runs a miniwdl task on the TES server configured in ``[tesengine]``."""

    _backend: ClassVar[Backend | None] = None
    _global_init: ClassVar[bool] = False  # the flag miniwdl itself sets after global_init
    _limits: ClassVar[dict[str, int]] = {}
    _parameters: ClassVar[frozenset[str]] = frozenset()  # backend_parameters the server takes
    memory: ClassVar[UrlMemory] = UrlMemory()

    @classmethod
    def global_init(cls, cfg: Any, logger: logging.Logger) -> None:
        """Open the process's one shared backend (once, before any task)."""
        settings = Settings.from_cfg(cfg)
        try:
            cls._backend = settings.open()
        except TesEngineError as exc:
            raise WDL.Error.RuntimeError(f"tesengine backend: {exc}") from None
        cls._limits = settings.limits()
        backend = cls._backend
        cls._parameters = _accepted_parameters(backend, logger)
        where = "embedded local server" if settings.embedded else settings.config
        logger.info(
            f"tesengine backend on {backend.config.backend.url} ({where}),"
            f" resource limits {cls._limits}"
        )

    @classmethod
    def initialised(cls, cfg: Any, logger: logging.Logger) -> Backend:
        """The shared backend, initialising it first as miniwdl would (for the downloaders)."""
        from WDL.runtime import task_container

        with task_container._backends_lock:
            if not cls._global_init:
                cls.global_init(cfg, logger)
                cls._global_init = True
        return cls.backend()

    @classmethod
    def detect_resource_limits(cls, cfg: Any, logger: logging.Logger) -> dict[str, int]:
        """The largest task the server takes (see :meth:`.settings.Settings.limits`)."""
        return cls._limits

    @classmethod
    def backend(cls) -> Backend:
        """The shared blocking backend (after :meth:`global_init`)."""
        if cls._backend is None:
            raise WDL.Error.RuntimeError("the tesengine backend was not initialised")
        return cls._backend

    def __init__(self, cfg: Any, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        self._disk_gb: float | None = None

    # -- inputs ------------------------------------------------------------

    def add_paths(self, host_paths: Iterable[str]) -> None:
        """Map input host paths to container paths outside ``work/`` (see :mod:`.paths`)."""
        assert not self._running
        new = []
        for host_path in host_paths:
            if host_path in self.input_path_map or host_path.rstrip("/") in self.input_path_map:
                continue
            if not os.path.exists(host_path.rstrip("/")):
                raise WDL.Error.InputError("input path not found: " + host_path)
            new.append(host_path)
        added = map_inputs(new, self.input_path_map_rev)
        self.input_path_map.update(added)

    def copy_input_files(self, logger: logging.Logger) -> None:
        """Nothing to copy: inputs are staged to storage, and the server fetches them."""
        logger.info("tesengine stages inputs to storage: [file_io] copy_input_files ignored")

    def process_runtime(self, logger: logging.Logger, runtime_eval: dict[str, Any]) -> None:
        """miniwdl's runtime handling, plus ``disks``/``disk`` (GiB) for the TES request."""
        super().process_runtime(logger, runtime_eval)
        for key in ("disks", "disk"):
            if key in runtime_eval:
                self._disk_gb = _disk_gb(str(runtime_eval[key].coerce(WDL.Type.String()).value))
                self.runtime_values["disk_gb"] = self._disk_gb
                break

    # -- running -----------------------------------------------------------

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        backend = self.backend()
        Path(self.host_dir, "command").write_text(command)
        task = self._task(command)
        run: TaskRun = backend.call(backend.tes.submit, task)
        logger.info(f"TES task {run.id} created ({run.name})")
        future: concurrent.futures.Future[TaskResult] = backend.start(_result, run)
        with self.task_running_context():
            result = self._wait(logger, terminating, backend, run, future)
        if result is None:
            code = self._failed(logger, run, future)
            self._log_stderr(logger)
            return code
        count = backend.call(fetch_outputs, backend.tes.storage, self.memory, self._fetch(result))
        logger.info(f"TES task {run.id} COMPLETE; {count} output files downloaded")
        self._log_stderr(logger)
        if "returnCodes" in self.runtime_values:
            url = join_url(result.outputs["task"].url, EXIT_CODE_FILE)
            return int(backend.call(read_small, backend.tes.storage, url).strip() or 0)
        return 0

    def _log_stderr(self, logger: logging.Logger) -> None:
        """The task's stderr into miniwdl's log (its verbose level), as its backends do."""
        with self.poll_stderr_context(logger) as poll:
            poll()

    def _wait(
        self,
        logger: logging.Logger,
        terminating: Callable[[], bool],
        backend: Backend,
        run: TaskRun,
        future: concurrent.futures.Future[TaskResult],
    ) -> TaskResult | None:
        """The result, or None when the task failed (the future holds why)."""
        while True:
            try:
                return future.result(timeout=_WAIT)
            except concurrent.futures.TimeoutError:
                if terminating():
                    logger.warning(f"cancelling TES task {run.id}")
                    backend.call(run.cancel)
                    future.cancel()
                    raise Terminated() from None
            except TaskFailed:
                return None

    def _failed(
        self, logger: logging.Logger, run: TaskRun, future: concurrent.futures.Future[TaskResult]
    ) -> int:
        exc = future.exception()
        assert isinstance(exc, TaskFailed)
        self.failure_info = {
            "tes_task_id": exc.task_id,
            "tes_state": exc.state,
            "system_logs": list(exc.system_logs),
        }
        codes = [c for c in exc.exit_codes if c not in (0, None)]
        if exc.state == "EXECUTOR_ERROR" and codes:
            # The wrapper printed the command's stderr tail to the executor's stderr.
            Path(self.host_stderr_txt()).write_text(exc.stderr_tail + "\n")
            Path(self.host_stdout_txt()).touch()
            return int(codes[0])
        if exc.state == "PREEMPTED":
            raise Interrupted(str(exc), more_info=self.failure_info)
        logger.error(str(exc))
        raise WDL.Error.RuntimeError(str(exc), more_info=self.failure_info)

    def _fetch(self, result: TaskResult) -> Fetch:
        return Fetch(
            result.outputs["task"].url,
            Path(self.host_work_dir()),
            Path(self.host_stdout_txt()),
            Path(self.host_stderr_txt()),
        )

    # -- the TES task ------------------------------------------------------

    def _task(self, command: str) -> Task:
        inputs: dict[str, Any] = {
            container.rstrip("/"): self._source(host)
            for host, container in self.input_path_map.items()
        }
        script = f"{self.container_dir}/command"
        if len(command.encode()) > MAX_INLINE_COMMAND:
            inputs[script] = Path(self.host_dir, "command")
            argv = ["bash", "-c", self._wrapper(write_command=False)]
        else:
            argv = ["bash", "-c", self._wrapper(write_command=True), "miniwdl", command]
        # One directory output: command, stdout.txt, stderr.txt, work/ (and the exit code).
        outputs = {"task": f"{self.container_dir}/"}
        values = self.runtime_values
        executor = Executor(
            image=str(values.get("docker") or "ubuntu:22.04"),
            command=argv,
            env={str(k): str(v) for k, v in (values.get("env") or {}).items()},
        )
        return Task(
            name=_UNSAFE_NAME.sub("-", self.run_id)[:100] or "task",
            executors=[executor],
            inputs=inputs,
            outputs=outputs,
            resources=self._resources(),
            tags={"miniwdl-run-id": self.run_id[:200]},
        )

    def _source(self, host_path: str) -> str | Path | RemoteFile | RemoteDirectory:
        if host_path.endswith("/"):
            url = self.memory.directory_url(host_path.rstrip("/"))
            return RemoteDirectory(url) if url else Path(host_path.rstrip("/"))
        url = self.memory.file_url(host_path)
        return RemoteFile(url) if url else Path(host_path)

    def _wrapper(self, *, write_command: bool) -> str:
        """The executor's script: run the command as miniwdl's backends do, keep its exit code."""
        root = shlex.quote(self.container_dir)
        shell = self.cfg.get("task_runtime", "command_shell", "bash")
        ok = self._accepted_codes()
        lines = [
            f"mkdir -p {root}/work && cd {root}/work || exit 1",
            *([f'printf "%s" "$1" > {root}/command'] if write_command else []),
            f"{shell} ../command > ../stdout.txt 2> ../stderr.txt",
            "rc=$?",
        ]
        if ok is None:
            lines.append('[ "$rc" -eq 0 ] && exit 0')
        else:
            lines.append(f'echo "$rc" > ../{EXIT_CODE_FILE}')
            lines.append(f'case " {ok} " in *" $rc "*) exit 0 ;; esac')
        # A failed task's outputs are not uploaded: its stderr tail goes to the
        # executor's stderr, which the server reports with the failure.
        lines += ["tail -c 65536 ../stderr.txt >&2", 'exit "$rc"']
        return "\n".join(lines)

    def _accepted_codes(self) -> str | None:
        """The exit codes that count as success, space-separated (None: only 0)."""
        codes = self.runtime_values.get("returnCodes")
        if codes is None:
            return None
        if codes == "*":
            return " ".join(str(i) for i in range(256))
        return " ".join(str(c) for c in (codes if isinstance(codes, list) else [codes]))

    def _resources(self) -> Resources:
        values = self.runtime_values
        memory = values.get("memory_reservation")
        gpu = bool(values.get("gpu")) and "gpu" in self._parameters
        if values.get("gpu") and not gpu:
            log.warning("runtime.gpu ignored: the TES server lists no 'gpu' backend parameter")
        return Resources(
            cpu_cores=int(values["cpu"]) if "cpu" in values else None,
            ram_gb=round(memory / 2**30, 3) if memory else None,
            disk_gb=self._disk_gb,
            preemptible=bool(values.get("preemptible")) or None,
            # TES 1.1 has no GPU field: asked for as the backend parameter
            # "gpu" where the server's service-info lists it.
            backend_parameters={"gpu": "1"} if gpu else {},
        )


def _accepted_parameters(backend: Backend, logger: logging.Logger) -> frozenset[str]:
    """The ``backend_parameters`` keys the server's service-info says it accepts."""
    try:
        info = backend.call(backend.tes.client.service_info)
    except TesEngineError as exc:
        logger.warning(f"tesengine: no service-info from the TES server ({exc})")
        return frozenset()
    return frozenset(info.tes_resources_backend_parameters or ())


async def _result(run: TaskRun) -> TaskResult:
    return await run


def _disk_gb(spec: str) -> float | None:
    """GiB from a WDL ``disks`` value: ``"10"``, ``"10 GiB"``, ``"local-disk 10 SSD"``..."""
    total = 0.0
    for part in spec.split(","):
        numbers = re.findall(r"\d+(?:\.\d+)?", part)
        if not numbers:
            continue
        amount = float(numbers[0])
        unit = re.search(r"\b([KMGT])I?B?\b", part.upper())
        scale = {"K": 2**-20, "M": 2**-10, "G": 1.0, "T": 1024.0}
        total += amount * scale.get(unit.group(1)[0], 1.0) if unit else amount
    return math.ceil(total * 1000) / 1000 if total else None
