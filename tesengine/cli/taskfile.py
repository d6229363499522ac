"""Task files for ``tesengine run --file``: several tasks, later ones fed by earlier outputs.

TOML or JSON, a list of ``tasks``::

    [[tasks]]
    name = "split"
    image = "debian:stable-slim"
    command = ["sh", "-c", "split -l 2 /in/text.txt /out/parts/part-"]
    inputs = { "/in/text.txt" = "text.txt" }     # relative to this file's folder
    outputs = { parts = "/out/parts/" }

    [[tasks]]
    name = "count"
    command = ["sh", "-c", "wc -w /in/parts/* > /out/counts.txt"]
    inputs = { "/in/parts" = { from = "split.outputs.parts" } }
    outputs = { counts = "/out/counts.txt" }

An input ``{ from = "<task>.outputs.<name>" }`` takes an earlier task's output
by URL: nothing is downloaded or uploaded again.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from ..engine import Executor, Resources, Task
from ..errors import ConfigError
from ..validation_errors import describe

DEFAULT_IMAGE = "debian:stable-slim"
_FROM = re.compile(r"^(?P<task>[^.]+)\.outputs\.(?P<output>[^.]+)$")


class FromOutput(BaseModel):
    """An input taken from an earlier task's output."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: Annotated[str, Field(alias="from")]

    @field_validator("from_")
    @classmethod
    def _shape(cls, value: str) -> str:
        if not _FROM.match(value):
            raise ValueError("expected '<task>.outputs.<name>'")
        return value

    @property
    def task(self) -> str:
        """Name of the producing task."""
        match = _FROM.match(self.from_)
        assert match is not None
        return match["task"]

    @property
    def output(self) -> str:
        """Name of the producing task's output."""
        match = _FROM.match(self.from_)
        assert match is not None
        return match["output"]


INPUT_SHAPE = 'expected a path, a URL, or { from = "<task>.outputs.<name>" }'


def _input_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "path"
    return "output-ref" if isinstance(value, dict | FromOutput) else None


#: A task file input: a local path or URL (a string), or an earlier task's output.
#: The callable discriminator gives anything else one clear message instead of
#: one message per union branch.
InputSource = Annotated[
    Annotated[str, Tag("path")] | Annotated[FromOutput, Tag("output-ref")],
    Discriminator(_input_kind, custom_error_type="input_source", custom_error_message=INPUT_SHAPE),
]


class TaskSpec(BaseModel):
    """One ``[[tasks]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    command: list[str]
    image: str = DEFAULT_IMAGE
    inputs: dict[str, InputSource] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    cpu: int | None = None
    ram: float | None = None
    disk: float | None = None


class TaskFile(BaseModel):
    """A whole task file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[TaskSpec]


def load_task_file(path: Path) -> TaskFile:
    """Parse and check a task file; :class:`ConfigError` names the file and key."""
    try:
        raw = path.read_bytes()
        data: Any = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read task file: {exc.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid task file: {exc}") from None
    try:
        parsed = TaskFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe(exc, TaskFile)}") from None
    check_graph(parsed, path)
    return parsed


def unique_pairs(pairs: Sequence[tuple[str, str]], flag: str, what: str) -> dict[str, str]:
    """``pairs`` as a dict; a key given twice is an error naming ``flag`` (never dropped)."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"{flag}: {what} {key!r} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def check_graph(tasks: TaskFile, path: Path) -> None:
    """Names unique; every ``from`` names an earlier task and one of its outputs."""
    seen: dict[str, TaskSpec] = {}
    for index, spec in enumerate(tasks.tasks):
        if spec.name in seen:
            raise ConfigError(f"{path}: tasks[{index}].name: duplicate task name {spec.name!r}")
        for container, source in spec.inputs.items():
            if not isinstance(source, FromOutput):
                continue
            key = f"tasks[{index}].inputs.{container}.from"
            upstream = seen.get(source.task)
            if upstream is None:
                raise ConfigError(f"{path}: {key}: no earlier task named {source.task!r}")
            if source.output not in upstream.outputs:
                raise ConfigError(
                    f"{path}: {key}: task {source.task!r} has no output {source.output!r}"
                )
        seen[spec.name] = spec


def to_task(spec: TaskSpec, base: Path, upstream: Mapping[str, Mapping[str, Any]]) -> Task:
    """The engine task for ``spec``; ``upstream`` maps task name -> its outputs."""
    inputs: dict[str, Any] = {}
    for container, source in spec.inputs.items():
        if isinstance(source, FromOutput):
            inputs[container] = upstream[source.task][source.output]
        elif "://" in source:
            inputs[container] = source
        else:
            inputs[container] = base / source
    resources = None
    if spec.cpu is not None or spec.ram is not None or spec.disk is not None:
        resources = Resources(cpu_cores=spec.cpu, ram_gb=spec.ram, disk_gb=spec.disk)
    executor = Executor(image=spec.image, command=spec.command, workdir=spec.workdir, env=spec.env)
    return Task(
        name=spec.name,
        executors=[executor],
        inputs=inputs,
        outputs=spec.outputs,
        resources=resources,
    )
