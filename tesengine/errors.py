"""The one exception tree of tesengine.

Every error tesengine raises on purpose derives from :class:`TesEngineError`,
so an embedding program can catch the whole family with one clause. Errors
of third-party libraries (aiohttp, obstore, pydantic, blake3) are translated
at the boundary where they occur (``raise ... from exc``), so they never leak
out of the public API untranslated::

    TesEngineError
    ├── ConfigError            bad or missing configuration (names file and key)
    ├── AuthError              credentials refused or unobtainable
    ├── InvalidTask            a task failed validation before anything was sent
    ├── DigestError            a local input cannot be hashed
    │   └── InputChanged       a file changed while it was hashed or uploaded
    ├── StorageError           an object store fault (names the URL)
    │   ├── ObjectNotFound     the object does not exist
    │   └── ContentMismatch    an object at a content address has the wrong size
    ├── TesError               talking to the TES server went wrong
    │   ├── TesApiError        the server answered with an error status
    │   └── TesUnavailable     retries exhausted: the server cannot be reached
    ├── TaskFailed             a task ended in EXECUTOR_ERROR, SYSTEM_ERROR, CANCELED
    └── OutputMissing          an output was read that the task did not produce

Messages never contain secrets: credentials are held as ``SecretStr`` and
URLs are passed through :func:`redact_url` before they are formatted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "AuthError",
    "ConfigError",
    "ContentMismatch",
    "DigestError",
    "InputChanged",
    "InvalidTask",
    "ObjectNotFound",
    "OutputMissing",
    "StorageError",
    "TaskFailed",
    "TesApiError",
    "TesEngineError",
    "TesError",
    "TesUnavailable",
    "redact_url",
]

#: Query (and fragment) parameters whose value is a secret, compared lower-cased
#: after percent-decoding: SAS ``sig``, AWS/GCS pre-signed URLs, OAuth tokens, API keys.
_SECRET_QUERY_KEYS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "session_token",
        "code",
        "key",
        "api_key",
        "apikey",
        "api-key",
        "access_key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
    }
)
#: Any parameter whose name contains one of these is treated as secret too
#: (``sessionToken``, ``my_secret``, ``X-Custom-Signature``...).
_SECRET_KEY_PARTS = ("token", "secret", "password", "passwd", "signature", "credential")
#: Schemes whose userinfo is a container name, not a credential.
_CONTAINER_USERINFO = frozenset({"abfs", "abfss", "wasb", "wasbs"})
_REDACTED = "<redacted>"
#: ``scheme:`` and the slashes after it; also matches typos such as ``htps:/``.
_SCHEME = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9+.-]*):/*")


def redact_url(url: str) -> str:
    """Return ``url`` with its secrets replaced by ``<redacted>``; everything else as given.

    Hidden: the password of the userinfo (``https://user:<redacted>@host/``; a
    user name alone, often a token, is hidden whole) and the values of secret
    query or fragment parameters (Azure SAS ``sig``, ``X-Amz-Signature``,
    ``X-Amz-Credential``, ``token``, ``access_token``, ``key``...). Other
    parameters (``sv``, ``se``, ``sp``, ``versionId``...) stay, so the URL is
    still recognisable. A URL without secrets comes back unchanged, and
    redacting twice changes nothing. This is the one function that serves
    every place tesengine prints a URL.
    """
    match = _SCHEME.match(url)
    if match is None:
        return _redact_tail(url)
    scheme, rest = match.group(0), url[match.end() :]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        authority = f"{_redact_userinfo(match['name'].lower(), userinfo)}@{host}"
    return f"{scheme}{authority}{_redact_tail(tail)}"


def _redact_userinfo(scheme: str, userinfo: str) -> str:
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{_REDACTED}"
    if scheme in _CONTAINER_USERINFO or userinfo == _REDACTED:
        return userinfo
    return _REDACTED


def _redact_tail(tail: str) -> str:
    """Redact the query and the fragment of ``path?query#fragment``."""
    head, hash_sep, fragment = tail.partition("#")
    path, q_sep, query = head.partition("?")
    if q_sep:
        path = f"{path}?{_redact_params(query)}"
    if hash_sep:
        path = f"{path}#{_redact_params(fragment)}"
    return path


def _redact_params(params: str) -> str:
    return "&".join(_redact_pair(pair) for pair in params.split("&"))


def _redact_pair(pair: str) -> str:
    key, sep, value = pair.partition("=")
    if sep and value and _is_secret_key(key):
        return f"{key}={_REDACTED}"
    return pair


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_QUERY_KEYS or any(part in name for part in _SECRET_KEY_PARTS)


class TesEngineError(Exception):
    """Root of every error tesengine raises on purpose."""


class ConfigError(TesEngineError):
    """The configuration is missing, malformed or invalid.

    The message names the file and the key path (``run.backends.default.url``).
    """


class AuthError(TesEngineError):
    """Credentials were refused by the server or could not be obtained."""


class InvalidTask(TesEngineError):
    """A task failed validation; nothing was uploaded or submitted for it."""


class DigestError(TesEngineError):
    """A local input could not be hashed (missing, unreadable, FIFO, loop...)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InputChanged(DigestError):
    """A local file changed while it was being hashed or uploaded."""


class StorageError(TesEngineError):
    """An object store operation failed. ``url`` is already redacted."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ObjectNotFound(StorageError):
    """The object does not exist."""


class ContentMismatch(StorageError):
    """An object at a content address is not what the address names (wrong size)."""


class TesError(TesEngineError):
    """Talking to the TES server went wrong."""


class TesApiError(TesError):
    """The TES server answered with an error status that is not retried.

    Carries the request method, redacted URL, HTTP status and the server's
    message (Funnel and tesengine's own server send ``{"error": ...}``).
    """

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method = method
        self.url = redact_url(url)
        self.status = status
        self.body = body
        super().__init__(f"{method} {self.url} -> HTTP {status}: {_short(body)}")


class TesUnavailable(TesError):
    """The TES server could not be reached, even after every retry."""


class TaskFailed(TesEngineError):
    """A task ended in EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED.

    The message says in one line what happened, for example
    ``task count (id abc) EXECUTOR_ERROR: executor 0 exited 3: no such file``.
    """

    def __init__(
        self,
        summary: str,
        *,
        task_id: str,
        state: str,
        exit_codes: Sequence[int | None] = (),
        stderr_tail: str = "",
        system_logs: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(summary)
        self.task_id = task_id
        self.state = state
        self.exit_codes = tuple(exit_codes)
        self.stderr_tail = stderr_tail
        self.system_logs = tuple(system_logs)
        self.extra = dict(extra or {})


class OutputMissing(TesEngineError):
    """An output was read that its task did not produce."""


def _short(body: str, limit: int = 500) -> str:
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
