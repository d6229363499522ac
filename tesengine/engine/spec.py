"""What a user submits: :class:`Task`, :class:`Executor`, :class:`Resources`.

These are plain frozen values, independent of the TES wire models in
:mod:`tesengine.tes.models`: the engine validates them, stages their local
inputs, and only then builds the wire request (:mod:`.request`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from ..redact import redact_repr

if TYPE_CHECKING:
    from .outputs import RemoteDirectory, RemoteFile

#: An input's source: a local path (``Path`` or a string without ``://``),
#: a URL string (passed through untouched), or an earlier task's output.
InputSource: TypeAlias = "str | os.PathLike[str] | RemoteFile | RemoteDirectory"


@dataclass(frozen=True, slots=True)
class Executor:
    """One command run in a container image; executors of a task run in order."""

    image: str
    command: Sequence[str]
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    ignore_error: bool = False


@dataclass(frozen=True, slots=True)
class Resources:
    """Requested compute resources; ``None`` leaves the choice to the server."""

    cpu_cores: int | None = None
    ram_gb: float | None = None
    disk_gb: float | None = None
    preemptible: bool | None = None
    zones: Sequence[str] = ()
    backend_parameters: Mapping[str, str] = field(default_factory=dict)
    backend_parameters_strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Task:
    """A task to submit.

    ``inputs`` maps a container path to its source; ``outputs`` maps a name to
    a container path (a trailing ``/`` declares a directory). The names key
    :attr:`TaskResult.outputs <tesengine.TaskResult.outputs>`.
    """

    name: str
    executors: Sequence[Executor]
    inputs: Mapping[str, InputSource] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    resources: Resources | None = None
    description: str | None = None
    volumes: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return redact_repr(self)  # input URLs may carry a SAS or a signature
