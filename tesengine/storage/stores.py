"""obstore stores built from :class:`~tesengine.config.StorageConfig` and the environment.

The file's ``[run.storage]`` settings win; what it leaves out comes from the
providers' usual environment variables, which obstore reads itself
(``AWS_*``, ``AZURE_STORAGE_*``, ``GOOGLE_*``). The few that decide
how tesengine builds a store (endpoint, plain http) are also read here:
plain http is allowed when ``allow_http`` says so, when ``AWS_ALLOW_HTTP``
does, or when the endpoint is a loopback host (a local MinIO, moto, rclone).
One store is built per bucket (container, account, SAS) and cached.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, MemoryStore, S3Store

from ..config import StorageConfig, is_loopback
from ..errors import StorageError
from .urls import Location

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["ObjectStore", "StoreCache", "memory_store"]

ObjectStore = S3Store | GCSStore | AzureStore | LocalStore | MemoryStore | HTTPStore

#: Retries of every cloud store. obstore's default gives up after 10 quick
#: retries (about 3 s), so an object store that is unavailable for half a
#: minute failed staging; this rides out an outage of up to five minutes.
#: (Each wait is drawn from [init, previous * base]: it grows slowly, so the
#: time limit, not the count, is what ends the retries.)
STORE_RETRY: RetryConfig = {
    "max_retries": 100,
    "retry_timeout": timedelta(minutes=5),
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=15),
        "base": 3.0,
    },
}

_TRUE = frozenset({"1", "true", "yes", "on"})
# Variables that configure credentials (rather than leave obstore to look
# for them on the instance metadata endpoint).
_S3_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
_AZURE_CREDENTIAL_VARS = (
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USE_AZURE_CLI",
    "AZURE_STORAGE_USE_EMULATOR",
)
_GOOGLE_CREDENTIAL_VARS = (
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
_GCLOUD_ADC = (".config", "gcloud", "application_default_credentials.json")
_S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_AZURE_ENDPOINT_VARS = ("AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT")

# memory:// buckets are process-wide, so every Storage in a process (the
# engine, an embedded TES server) sees the same objects.
_MEMORY: dict[str, MemoryStore] = {}
_MEMORY_LOCK = threading.Lock()


def memory_store(name: str) -> MemoryStore:
    """The process-wide in-memory store called ``name``."""
    with _MEMORY_LOCK:
        return _MEMORY.setdefault(name, MemoryStore())


class StoreCache:
    """Builds and caches one obstore store per bucket for a storage config."""

    def __init__(
        self, config: StorageConfig | None = None, *, ambient_credentials: bool = True
    ) -> None:
        self.config = config or StorageConfig()
        self.ambient_credentials = ambient_credentials
        self._stores: dict[tuple[str, ...], ObjectStore] = {}
        self._local: LocalStore | None = None

    def __len__(self) -> int:
        """How many stores were built (and are cached)."""
        return len(self._stores)

    def store_for(self, loc: Location) -> ObjectStore:
        """The store that serves ``loc``'s bucket (built on first use)."""
        store = self._stores.get(loc.store_id)
        if store is None:
            try:
                store = self._build(loc)
            except (ValueError, TypeError, OSError, RuntimeError) as exc:
                url = loc.redacted
                raise StorageError(f"cannot configure storage for {url}: {exc}", url=url) from None
            self._stores[loc.store_id] = store
        return store

    def _build(self, loc: Location) -> ObjectStore:
        retry = STORE_RETRY
        if loc.provider == "s3":
            options = self._anonymous_unless_configured(s3_options(self.config, loc), loc)
            return S3Store(loc.bucket, retry_config=retry, **options)
        if loc.provider == "az":
            options = self._anonymous_unless_configured(azure_options(self.config, loc), loc)
            return AzureStore(loc.bucket, retry_config=retry, **options)
        if loc.provider == "gs":
            options = self._anonymous_unless_configured(gcs_options(self.config), loc)
            return GCSStore(loc.bucket, retry_config=retry, **options)
        if loc.provider == "memory":
            return memory_store(loc.bucket)
        if loc.provider == "file":
            return LocalStore("/")
        return HTTPStore.from_url(
            loc.bucket, client_options=_http_client(loc.bucket), retry_config=retry
        )

    def _anonymous_unless_configured(
        self, options: dict[str, Any], loc: Location
    ) -> dict[str, Any]:
        # With no credentials configured, obstore falls back to the cloud's
        # instance metadata endpoint (169.254.169.254). A server must not do
        # that on a client's behalf: unsigned requests instead.
        if self.ambient_credentials or has_credentials(self.config, loc):
            return options
        return {**options, "skip_signature": True}


def has_credentials(config: StorageConfig, loc: Location) -> bool:
    """True when ``config`` or the environment names credentials for ``loc``'s provider."""
    if loc.provider == "s3":
        return config.s3.auth is not None or _any_env(_S3_CREDENTIAL_VARS)
    if loc.provider == "az":
        az = config.azure
        configured = az.auth is not None or az.sas_token is not None or az.use_emulator
        return configured or bool(loc.query) or _any_env(_AZURE_CREDENTIAL_VARS)
    if loc.provider == "gs":
        auth = config.google.auth
        configured = auth is not None and (
            auth.service_account_path is not None or auth.service_account_key is not None
        )
        return (
            configured
            or _any_env(_GOOGLE_CREDENTIAL_VARS)
            or Path.home().joinpath(*_GCLOUD_ADC).is_file()
        )
    return True


def _any_env(names: tuple[str, ...]) -> bool:
    return any(os.environ.get(name) for name in names)


def s3_options(config: StorageConfig, loc: Location) -> dict[str, Any]:
    """Keyword arguments for :class:`S3Store` (pure apart from reading ``os.environ``)."""
    s3 = config.s3
    options: dict[str, Any] = {}
    region = s3.region or loc.region
    if region:
        options["region"] = region
    endpoint = s3.endpoint or _first_env(_S3_ENDPOINT_VARS)
    if s3.endpoint:
        options["endpoint"] = s3.endpoint
    if s3.virtual_hosted_style is not None:
        options["virtual_hosted_style_request"] = s3.virtual_hosted_style
    if s3.auth is not None:
        options["access_key_id"] = s3.auth.access_key_id
        options["secret_access_key"] = s3.auth.secret_access_key.get_secret_value()
        if s3.auth.session_token is not None:
            options["session_token"] = s3.auth.session_token.get_secret_value()
    allow = s3.allow_http
    if allow is None:
        allow = _env_true("AWS_ALLOW_HTTP") or _loopback_http(endpoint)
    options["client_options"] = {"allow_http": bool(allow)}
    return options


def azure_options(config: StorageConfig, loc: Location) -> dict[str, Any]:
    """Keyword arguments for :class:`AzureStore`."""
    az = config.azure
    options: dict[str, Any] = {}
    if az.auth is not None:
        options["account_name"] = az.auth.account_name
        options["account_key"] = az.auth.access_key.get_secret_value()
    if loc.account:
        options["account_name"] = loc.account
    if loc.query:
        options["sas_key"] = loc.query  # a SAS carried on the URL beats the file's
    elif az.sas_token is not None:
        options["sas_key"] = az.sas_token.get_secret_value().lstrip("?")
    if az.endpoint:
        options["endpoint"] = az.endpoint
    if az.use_emulator:
        options["use_emulator"] = True
    endpoint = az.endpoint or _first_env(_AZURE_ENDPOINT_VARS)
    allow = az.use_emulator or _env_true("AZURE_ALLOW_HTTP") or _loopback_http(endpoint)
    options["client_options"] = {"allow_http": allow}
    return options


def gcs_options(config: StorageConfig) -> dict[str, Any]:
    """Keyword arguments for :class:`GCSStore` (``GOOGLE_*`` variables fill the rest)."""
    auth = config.google.auth
    options: dict[str, Any] = {}
    if auth is not None and auth.service_account_path is not None:
        options["service_account_path"] = str(auth.service_account_path)
    if auth is not None and auth.service_account_key is not None:
        options["service_account_key"] = auth.service_account_key.get_secret_value()
    return options


def _http_client(origin: str) -> ClientConfig:
    return {"allow_http": origin.startswith("http://")}


def _first_env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _loopback_http(endpoint: str | None) -> bool:
    if not endpoint:
        return False
    parts = urlsplit(endpoint)
    return parts.scheme == "http" and is_loopback(parts.hostname or "")
