"""Finding and loading a configuration file: a Sprocket ``sprocket.toml`` read unchanged.

Sources, strongest first (the pydantic-settings order): keyword arguments,
then ``TESENGINE_*`` environment variables, then the TOML file. The file is
found by :func:`find_config_file`: an explicit path, ``$TESENGINE_CONFIG``,
``./sprocket.toml``, then ``./tesengine.toml``.

Only ``[run.backends.<name>]`` (the selected TES backend) and ``[run.storage]``
are read; every other section of a sprocket.toml belongs to Sprocket and is
ignored. Inside those tables validation is strict: an unknown or mistyped key
is a :class:`~tesengine.errors.ConfigError` naming the file and the key path,
and an error caused by an environment variable or an argument names that.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import validation_errors
from ..errors import ConfigError, redact_url
from .models import FILE_TABLE, URL_KEYS, BackendConfig, Config, StorageConfig, url_has_secret

log = logging.getLogger("tesengine.config")

CONFIG_ENV = "TESENGINE_CONFIG"
DEFAULT_FILES = ("sprocket.toml", "tesengine.toml")


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, or None when there is none anywhere."""
    if path is not None:
        return Path(path)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    return next((Path(n) for n in DEFAULT_FILES if Path(n).is_file()), None)


def load_config(
    path: str | os.PathLike[str] | None = None,
    backend: str = "default",
    **overrides: Any,
) -> Config:
    """Load and validate the TES backend ``backend`` from a sprocket.toml.

    ``overrides`` are keys of the backend table and beat the environment,
    which beats the file. Raises :class:`ConfigError` naming file and key.
    """
    source = find_config_file(path)
    if source is None and not overrides and "TESENGINE_URL" not in os.environ:
        searched = ", ".join(f"./{name}" for name in DEFAULT_FILES)
        raise ConfigError(
            f"no configuration found (searched ${CONFIG_ENV}, {searched}):"
            f" pass a path, set {CONFIG_ENV}, or create ./{DEFAULT_FILES[0]}"
        )
    where = str(source) if source else "<environment>"
    run = _table(_read_toml(source) if source else {}, "run", where)
    table = _table(_table(run, "backends", where), backend, where, required=source is not None)
    if table.get("type", "tes") != "tes":
        raise ConfigError(
            f"{where}: run.backends.{backend}.type: is {table['type']!r};"
            ' tesengine drives only backends with type = "tes"'
        )
    origins = _origins(table, overrides, where)
    token = FILE_TABLE.set(table)
    try:
        backend_cfg = BackendConfig(**overrides)
    except ValidationError as exc:
        prefix = f"run.backends.{backend}"
        raise ConfigError(_blame(exc, BackendConfig, where, prefix, origins)) from None
    finally:
        FILE_TABLE.reset(token)
    try:
        storage = StorageConfig.model_validate(_table(run, "storage", where))
    except ValidationError as exc:
        raise ConfigError(_blame(exc, StorageConfig, where, "run.storage", {})) from None
    config = Config(
        backend_name=backend, backend=backend_cfg, storage=storage, source=source, origins=origins
    )
    if source is not None:
        _warn_if_exposed(source, config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _table(parent: dict[str, Any], key: str, where: str, *, required: bool = False) -> Any:
    value = parent.get(key)
    if value is None and required:
        raise ConfigError(f"{where}: no [run.backends.{key}] table (the selected backend)")
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: expected a table, got {type(value).__name__}")
    return value or {}


def _env_names(key: str) -> list[str]:
    """The ``TESENGINE_*`` variables that set backend key ``key`` (pydantic-settings
    matches names case-insensitively; nested keys use ``__``)."""
    name = f"TESENGINE_{key}".upper()
    return sorted(k for k in os.environ if k.upper() == name or k.upper().startswith(f"{name}__"))


def _origins(table: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, str]:
    """Where each backend key's value comes from, strongest source first."""
    origins: dict[str, str] = {}
    for key in BackendConfig.model_fields:
        if key in overrides:
            origins[key] = "argument"
        elif names := _env_names(key):
            origins[key] = "env " + ", ".join(names)
        elif key in table:
            origins[key] = where
    return origins


def _blame(
    exc: ValidationError,
    model: type[BaseModel],
    where: str,
    prefix: str,
    origins: Mapping[str, str],
) -> str:
    """One line: file problems under the file's name, the others on their variable."""
    in_file: list[str] = []
    elsewhere: list[str] = []
    for problem in validation_errors.problems(exc, model, f"{prefix}."):
        key = problem.fields[0] if problem.fields else ""
        origin = origins.get(key, where)
        if origin == "argument":
            elsewhere.append(f"argument {key}: {problem.reason}")
        elif origin.startswith("env "):
            elsewhere.append(f"{_env_value(key)}: {problem.reason}")
        else:
            in_file.append(f"{problem.where}: {problem.reason}")
    parts = ([f"{where}: " + "; ".join(in_file)] if in_file else []) + elsewhere
    return "; ".join(parts)


def _env_value(key: str) -> str:
    """``TESENGINE_KEY='value'`` to blame; no value for credentials, URLs redacted."""
    names = _env_names(key)
    if key == "auth" or len(names) != 1 or "__" in names[0]:
        return "environment variable " + ", ".join(names)
    value = os.environ[names[0]]
    shown = redact_url(value) if key in URL_KEYS else value
    return f"environment variable {names[0]}={shown!r}"


def _warn_if_exposed(path: Path, config: Config) -> None:
    if os.name != "posix" or not _has_secret(config):
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s holds credentials and is accessible by group or others (mode %o);"
            " run: chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )


def _has_secret(config: Config) -> bool:
    if "<redacted>" in repr(config.redacted()):
        return True
    backend = config.backend
    urls = [backend.url, backend.inputs, backend.outputs, config.storage.s3.endpoint or ""]
    return any(url_has_secret(url) for url in urls)
