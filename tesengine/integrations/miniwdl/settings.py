"""The ``[tesengine]`` section of miniwdl's cfg, and the shared backend it opens.

=====================  ==========================================================
key                    meaning
=====================  ==========================================================
``config``             path to a sprocket.toml; empty: the embedded local server
``backend``            the ``[run.backends.<name>]`` table to use (``default``)
``embedded_root``      the embedded server's root (default: tesengine's cache dir)
``embedded_runtime``   the embedded server's runtime: ``local`` (default) or ``noop``
``cpu_limit``          largest ``runtime.cpu`` one task may get (0: see below)
``memory_limit``       largest ``runtime.memory`` one task may get, e.g. ``64G`` (0)
=====================  ==========================================================

Like every miniwdl option, each is overridable by the environment
(``MINIWDL__TESENGINE__CONFIG``...). With limits at 0, the embedded server
gives this machine's CPUs and memory (what it can run), and a configured
server is given no limit: the TES server schedules and refuses what it cannot run.

The engine's own PREEMPTED resubmission is turned off here: a preempted task
becomes miniwdl's ``Interrupted``, so ``runtime.preemptible`` counts the retries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...blocking import Backend
from ...config import load_config

SECTION = "tesengine"
#: What a configured (remote) server is given: no limit in practice.
UNLIMITED = {"cpu": 1 << 20, "mem_bytes": 1 << 60}


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``[tesengine]`` options, read once per process."""

    config: str = ""
    backend: str = "default"
    embedded_root: str = ""
    embedded_runtime: str = "local"
    cpu_limit: int = 0
    memory_limit: int = 0

    @classmethod
    def from_cfg(cls, cfg: Any) -> Settings:
        """The settings in miniwdl's ``cfg`` (a ``WDL.runtime.config.Loader``)."""
        import WDL
        from WDL._util import parse_byte_size

        def get(key: str, default: str) -> str:
            return str(cfg.get(SECTION, key, default) or default).strip()

        def number(key: str, parse: Any) -> int:
            text = get(key, "0")
            try:
                return 0 if text == "0" else int(parse(text))
            except ValueError:
                raise WDL.Error.RuntimeError(
                    f"[{SECTION}] {key} = {text!r}: not a valid {key.replace('_', ' ')}"
                ) from None

        return cls(
            config=get("config", ""),
            backend=get("backend", "default"),
            embedded_root=get("embedded_root", ""),
            embedded_runtime=get("embedded_runtime", "local"),
            cpu_limit=number("cpu_limit", int),
            memory_limit=number("memory_limit", parse_byte_size),
        )

    @property
    def embedded(self) -> bool:
        """True when no sprocket.toml is named: tasks run on a local server in process."""
        return not self.config

    def open(self) -> Backend:
        """The process's shared blocking backend."""
        if self.embedded:
            root = Path(self.embedded_root) if self.embedded_root else None
            return Backend.embedded(root, runtime=self.embedded_runtime, preempted_retries=0)
        return Backend(load_config(self.config, self.backend, preempted_retries=0))

    def limits(self) -> dict[str, int]:
        """The largest task miniwdl may ask for (``cpu``, ``mem_bytes``)."""
        found = dict(_this_machine() if self.embedded else UNLIMITED)
        if self.cpu_limit > 0:
            found["cpu"] = self.cpu_limit
        if self.memory_limit > 0:
            found["mem_bytes"] = self.memory_limit
        return found


def _this_machine() -> dict[str, int]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpu": os.cpu_count() or 1, "mem_bytes": int(pages)}
