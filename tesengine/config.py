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
import stat
import tomllib
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

from .errors import ConfigError

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
]

log = logging.getLogger("tesengine.config")

CONFIG_ENV = "TESENGINE_CONFIG"
DEFAULT_FILES = ("sprocket.toml", "tesengine.toml")
STORAGE_SCHEMES = frozenset({"s3", "gs", "az", "azure", "abfs", "https", "http", "file", "memory"})


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
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("inputs", "outputs")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in STORAGE_SCHEMES:
            wanted = ", ".join(sorted(STORAGE_SCHEMES))
            raise ValueError(
                f"unsupported URL scheme {scheme or '(none)'!r}; expected one of {wanted}"
            )
        return value

    @model_validator(mode="after")
    def _credentials_need_https(self) -> BackendConfig:
        if self.auth is None or self.insecure:
            return self
        parts = urlsplit(self.url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise ValueError(
                f"refusing to send credentials over plain http to {parts.hostname}:"
                " use https, a loopback host, or set insecure = true"
            )
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

    def redacted(self) -> dict[str, Any]:
        """The resolved configuration as plain data, every secret as ``<redacted>``."""
        return {
            "source": str(self.source) if self.source else None,
            "backend": self.backend_name,
            f"run.backends.{self.backend_name}": _redact(self.backend.model_dump(mode="python")),
            "run.storage": _redact(self.storage.model_dump(mode="python")),
        }


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "<redacted>"
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items() if v is not None}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


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
        raise ConfigError(
            "no configuration found: pass a path, set TESENGINE_CONFIG,"
            f" or create ./{DEFAULT_FILES[0]}"
        )
    where = str(source) if source else "<environment>"
    run = _table(_read_toml(source) if source else {}, "run", where)
    table = _table(_table(run, "backends", where), backend, where, required=source is not None)
    if table.get("type", "tes") != "tes":
        raise ConfigError(
            f"{where}: run.backends.{backend}.type: is {table['type']!r};"
            ' tesengine drives only backends with type = "tes"'
        )
    token = _FILE_TABLE.set(table)
    try:
        backend_cfg = BackendConfig(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, f"run.backends.{backend}")) from None
    finally:
        _FILE_TABLE.reset(token)
    try:
        storage = StorageConfig.model_validate(_table(run, "storage", where))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, "run.storage")) from None
    config = Config(backend_name=backend, backend=backend_cfg, storage=storage, source=source)
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


def _describe(exc: ValidationError, where: str, prefix: str) -> str:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join([prefix, *(str(p) for p in err["loc"] if not _is_union_tag(p))])
        problems.append(f"{loc}: {_reason(err)}")
    return f"{where}: " + "; ".join(problems)


def _is_union_tag(part: object) -> bool:
    return part in ("basic", "bearer")


def _reason(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    return str(err["msg"]).removeprefix("Value error, ")


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
    return "<redacted>" in repr(config.redacted())
