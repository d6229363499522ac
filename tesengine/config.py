"""Configuration: a Sprocket ``sprocket.toml`` loaded unchanged, plus extensions.

Sources, strongest first (the pydantic-settings order): keyword arguments,
then ``TESENGINE_*`` environment variables, then the TOML file. The file is
found by :func:`find_config_file`: an explicit path, ``$TESENGINE_CONFIG``,
``./sprocket.toml``, then ``./tesengine.toml``.

Only ``[run.backends.<name>]`` (the selected TES backend) and ``[run.storage]``
are read; every other section of a sprocket.toml belongs to Sprocket and is
ignored. Inside those tables validation is strict: an unknown or mistyped key
is a :class:`~tesengine.errors.ConfigError` naming the file and the key path.
"""

from __future__ import annotations

import builtins
import contextvars
import ipaddress
import logging
import os
import shlex
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from . import validation_errors
from .errors import ConfigError, redact_url

__all__ = [
    "AzureStorage",
    "BackendConfig",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "Config",
    "GoogleStorage",
    "S3Storage",
    "StorageConfig",
    "find_config_file",
    "load_config",
    "url_has_secret",
]

log = logging.getLogger("tesengine.config")

CONFIG_ENV = "TESENGINE_CONFIG"
DEFAULT_FILES = ("sprocket.toml", "tesengine.toml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuthConfig(_Strict):
    """``[run.backends.<name>.auth]`` with ``type = "basic"``."""

    type: Literal["basic"]
    username: str
    password: SecretStr


class BearerAuthConfig(_Strict):
    """``type = "bearer"``: a ``token``, or (beyond Sprocket) a file or command.

    ``token_file`` and ``token_command`` are re-read when the server answers 401.
    """

    type: Literal["bearer"]
    token: SecretStr | None = None
    token_file: Path | None = None
    token_command: list[str] | str | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> BearerAuthConfig:
        given = [n for n in ("token", "token_file", "token_command") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "bearer auth needs exactly one of token, token_file, token_command"
                f" (got {', '.join(given) or 'none'})"
            )
        return self


AuthConfig = Annotated[BasicAuthConfig | BearerAuthConfig, Field(discriminator="type")]


class S3Auth(_Strict):
    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None = None


class S3Storage(_Strict):
    """``[run.storage.s3]``: Sprocket's keys plus any S3-compatible endpoint."""

    region: str | None = None
    endpoint: str | None = None
    allow_http: bool | None = None
    virtual_hosted_style: bool | None = None
    auth: S3Auth | None = None


class AzureAuth(_Strict):
    account_name: str
    access_key: SecretStr


class AzureStorage(_Strict):
    """``[run.storage.azure]``: shared key or SAS; ``use_emulator`` for Azurite."""

    auth: AzureAuth | None = None
    sas_token: SecretStr | None = None
    endpoint: str | None = None
    use_emulator: bool = False


class GoogleAuth(_Strict):
    access_key: str | None = None
    secret: SecretStr | None = None
    service_account_path: Path | None = None
    service_account_key: SecretStr | None = None


class GoogleStorage(_Strict):
    """``[run.storage.google]``."""

    auth: GoogleAuth | None = None


class StorageConfig(_Strict):
    """``[run.storage]``: credentials and endpoints per provider."""

    s3: S3Storage = S3Storage()
    azure: AzureStorage = AzureStorage()
    google: GoogleStorage = GoogleStorage()


_FILE_TABLE: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("_FILE_TABLE")


class _FileTableSource(PydanticBaseSettingsSource):
    """The selected backend's TOML table, weakest of the sources."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ returns the table whole

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_TABLE.get({}))


class BackendConfig(BaseSettings):
    """One ``[run.backends.<name>]`` table with ``type = "tes"``.

    Every key after ``auth`` is a tesengine extension; Sprocket ignores none
    of them because Sprocket never sees them in its own backends.
    """

    model_config = SettingsConfigDict(
        env_prefix="TESENGINE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    type: Literal["tes"]
    url: str
    inputs: str
    outputs: str
    interval: PositiveFloat = 60.0
    auth: AuthConfig | None = None

    max_concurrency: PositiveInt = 256
    retries: Annotated[int, Field(ge=0)] = 8
    connect_timeout: PositiveFloat = 10.0
    read_timeout: PositiveFloat = 60.0
    #: Seconds one TES exchange may take in all (connect, send, headers, whole
    #: body), however slowly the server trickles it; then it is retried.
    request_deadline: PositiveFloat = 300.0
    #: Largest TES reply accepted, in bytes (64 MiB); a larger one is refused.
    max_response_bytes: PositiveInt = 64 << 20
    insecure: bool = False
    cache_dir: Path | None = None
    staging_concurrency: PositiveInt = 32
    digest_threads: PositiveInt | None = None
    on_close: Literal["cancel", "leave"] = "cancel"
    polling: Literal["auto", "batch", "per-task"] = "auto"
    preempted_retries: Annotated[int, Field(ge=0)] = 2

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: builtins.type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileTableSource(settings_cls)

    @field_validator("url")
    @classmethod
    def _tes_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # redacted: a typo in the scheme must not print the password in the URL
            raise ValueError(f"expected an http:// or https:// URL, got {redact_url(value)!r}")
        return value.rstrip("/")

    @field_validator("inputs", "outputs")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        # Imported here: the storage package imports this module (StorageConfig).
        from .storage.urls import scheme_problem

        problem = scheme_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _credentials_need_https(self) -> BackendConfig:
        from .auth import plain_http_refusal  # auth imports this module

        refusal = plain_http_refusal(self.url, insecure=self.insecure, allow="set insecure = true")
        if self.auth is not None and refusal is not None:
            raise ValueError(refusal)
        return self

    @property
    def resolved_cache_dir(self) -> Path:
        """Where digests and downloaded outputs are cached."""
        return self.cache_dir or Path(platformdirs.user_cache_dir("tesengine"))


class Config(BaseModel):
    """Everything tesengine needs to talk to one TES backend."""

    model_config = ConfigDict(frozen=True)

    backend_name: str
    backend: BackendConfig
    storage: StorageConfig = StorageConfig()
    source: Path | None = None
    #: Where each key of the backend table came from: ``argument``,
    #: ``env TESENGINE_<KEY>``, the file's path, or ``default``.
    origins: dict[str, str] = Field(default_factory=dict)

    def redacted(self) -> dict[str, Any]:
        """The resolved configuration as plain data, every secret as ``<redacted>``.

        Secrets are ``SecretStr`` values, URL userinfo and signature-like query
        values (through :func:`~tesengine.errors.redact_url`), and the
        arguments of a ``token_command`` (they often carry a token or a key).
        """
        backend = _redact(self.backend.model_dump(mode="python"))
        return {
            "source": str(self.source) if self.source else None,
            "backend": self.backend_name,
            f"run.backends.{self.backend_name}": backend,
            "run.storage": _redact(self.storage.model_dump(mode="python")),
            "origins": {key: self.origins.get(key, "default") for key in backend},
        }


_URL_KEYS = frozenset({"url", "inputs", "outputs", "endpoint"})


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, SecretStr):
        return "<redacted>"
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items() if v is not None}
    if key == "token_command":
        return _redact_command(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if key in _URL_KEYS and isinstance(value, str):
        return redact_url(value)
    return str(value) if isinstance(value, Path) else value


def _redact_command(command: list[str] | str) -> list[str]:
    """The program name only: its arguments may carry a secret."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return argv[:1] + (["<redacted>"] if len(argv) > 1 else [])


def url_has_secret(url: str) -> bool:
    """True when ``url`` carries userinfo or a query value that redaction hides."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.username or parts.password) or urlsplit(redact_url(url)).query != parts.query


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    token = _FILE_TABLE.set(table)
    try:
        backend_cfg = BackendConfig(**overrides)
    except ValidationError as exc:
        prefix = f"run.backends.{backend}"
        raise ConfigError(_blame(exc, BackendConfig, where, prefix, origins)) from None
    finally:
        _FILE_TABLE.reset(token)
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
    shown = redact_url(value) if key in _URL_KEYS else value
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
