"""The configuration's shape: a TES backend table, storage, and what ``load_config`` returns.

Each model validates strictly (unknown keys are errors); :meth:`Config.redacted`
shows a configuration with every secret hidden.
"""

from __future__ import annotations

import builtins
import contextvars
import ipaddress
import shlex
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
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..errors import redact_url


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


#: The selected backend's TOML table, set by the loader while a BackendConfig validates.
FILE_TABLE: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("FILE_TABLE")


class _FileTableSource(PydanticBaseSettingsSource):
    """The selected backend's TOML table, weakest of the sources."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ returns the table whole

    def __call__(self) -> dict[str, Any]:
        return dict(FILE_TABLE.get({}))


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
        from ..storage.urls import scheme_problem

        problem = scheme_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _credentials_need_https(self) -> BackendConfig:
        from ..auth import plain_http_refusal  # auth imports this module

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


URL_KEYS = frozenset({"url", "inputs", "outputs", "endpoint"})


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, SecretStr):
        return "<redacted>"
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items() if v is not None}
    if key == "token_command":
        return _redact_command(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if key in URL_KEYS and isinstance(value, str):
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
