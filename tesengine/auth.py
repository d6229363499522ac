"""Credentials for the TES server: the ``Authorization`` header and its refresh.

A provider makes the header value; the TES client attaches it only to
requests whose origin (scheme, host, port) is the TES server's, see
:func:`same_origin`, and asks the provider to :meth:`~AuthProvider.refresh`
once when the server answers 401.

- ``basic``: ``username`` and ``password`` (Sprocket's).
- ``bearer`` with ``token`` (Sprocket's), or ``token_file`` / ``token_command``
  (tesengine's): the file is re-read, or the command re-run, on a 401.

Secrets are never in a provider's repr, in logs or in error messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from .config import BasicAuthConfig, BearerAuthConfig, is_loopback
from .errors import AuthError
from .singleflight import SingleFlight

__all__ = [
    "AuthProvider",
    "BasicAuth",
    "BearerToken",
    "auth_from_config",
    "plain_http_refusal",
    "same_origin",
]

log = logging.getLogger("tesengine.auth")

_DEFAULT_PORTS = {"http": 80, "https": 443}
TOKEN_COMMAND_TIMEOUT = 60.0


@runtime_checkable
class AuthProvider(Protocol):
    """Produces the ``Authorization`` header for the TES server."""

    async def header(self) -> str | None:
        """The header value, or None to send none."""
        ...  # pragma: no cover

    async def refresh(self) -> bool:
        """Obtain new credentials after a 401; False when there is nothing new to try."""
        ...  # pragma: no cover


def same_origin(url: str, server_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``server_url``.

    Default ports count as given (``https://h`` is ``https://h:443``); host
    names compare case-insensitively. Anything unparseable is not the same.
    """
    try:
        a, b = urlsplit(url), urlsplit(server_url)
        port_a = a.port or _DEFAULT_PORTS.get(a.scheme.lower())
        port_b = b.port or _DEFAULT_PORTS.get(b.scheme.lower())
    except ValueError:
        return False
    return (
        bool(a.hostname)
        and a.scheme.lower() == b.scheme.lower()
        and a.hostname == b.hostname  # urlsplit lower-cases hostnames
        and port_a == port_b
    )


def plain_http_refusal(url: str, *, insecure: bool, allow: str) -> str | None:
    """Why credentials must not be sent to ``url``, or None when they may be.

    Plain http to a host that is not loopback would show them to anyone on
    the path; ``insecure`` allows it anyway. ``allow`` says how to set that
    where the caller's user would (``insecure = true`` in a config file).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if insecure or parts.scheme != "http" or is_loopback(host):
        return None
    return (
        f"refusing to send credentials over plain http to {host}:"
        f" use https, a loopback host, or {allow}"
    )


class BasicAuth:
    """HTTP basic auth. There is nothing to refresh: a 401 is final."""

    __slots__ = ("_header",)

    def __init__(self, username: str, password: str) -> None:
        pair = f"{username}:{password}".encode()
        self._header = "Basic " + base64.b64encode(pair).decode("ascii")

    def __repr__(self) -> str:
        return "BasicAuth(<redacted>)"

    async def header(self) -> str | None:
        """``Basic <base64(username:password)>``."""
        return self._header

    async def refresh(self) -> bool:
        """Basic credentials cannot change: always False."""
        return False


TokenSource = Callable[[], Awaitable[str]]


class BearerToken:
    """A bearer token, fixed or obtained from a source that can be asked again.

    With a source, the token is fetched on first use and again on
    :meth:`refresh`; concurrent refreshes share one fetch, so a burst of 401s
    from many in-flight requests runs the command once.
    """

    __slots__ = ("_describe", "_fetches", "_source", "_token")

    def __init__(
        self, token: str | None = None, *, source: TokenSource | None = None, describe: str = ""
    ) -> None:
        if (token is None) == (source is None):
            raise ValueError("BearerToken needs exactly one of token or source")
        self._token = token
        self._source = source
        self._describe = describe or ("token" if source is None else "token source")
        self._fetches: SingleFlight[None, bool] = SingleFlight()

    def __repr__(self) -> str:
        return f"BearerToken({self._describe}, <redacted>)"

    async def header(self) -> str | None:
        """``Bearer <token>``, fetching the token on first use."""
        if self._token is None:
            await self._fetch_shared()
        return f"Bearer {self._token}"

    async def refresh(self) -> bool:
        """Fetch the token again; True when it changed (a retry may then succeed)."""
        if self._source is None:
            return False
        return await self._fetch_shared()

    async def _fetch_shared(self) -> bool:
        # one fetch for a burst of callers; it stops only when all of them gave up
        return await self._fetches.run(None, self._fetch)

    async def _fetch(self) -> bool:
        assert self._source is not None
        token = (await self._source()).strip()
        if not token:
            raise AuthError(f"bearer {self._describe} produced an empty token")
        changed = token != self._token
        self._token = token
        log.debug("bearer token obtained from %s (changed: %s)", self._describe, changed)
        return changed


def _file_source(path: Path) -> TokenSource:
    async def read() -> str:
        try:
            return await asyncio.to_thread(path.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthError(f"cannot read bearer token_file {path}: {exc}") from None

    return read


def _command_source(argv: list[str], timeout: float = TOKEN_COMMAND_TIMEOUT) -> TokenSource:
    # Only the program name is ever shown: arguments may carry secrets.
    program = Path(argv[0]).name if argv else "<empty>"

    async def run() -> str:
        if not argv:
            raise AuthError("bearer token_command is empty")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise AuthError(f"cannot run bearer token_command {program}: {exc.strerror}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.CancelledError:
            proc.kill()  # every caller gave up on the shared fetch: stop the command too
            raise
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AuthError(
                f"bearer token_command {program} did not finish in {timeout:g}s"
            ) from None
        if proc.returncode != 0:
            raise AuthError(f"bearer token_command {program} exited with status {proc.returncode}")
        return out.decode("utf-8", errors="replace")

    return run


def auth_from_config(cfg: BasicAuthConfig | BearerAuthConfig | None) -> AuthProvider | None:
    """The provider for a ``[run.backends.<name>.auth]`` table; None without one."""
    if cfg is None:
        return None
    if isinstance(cfg, BasicAuthConfig):
        return BasicAuth(cfg.username, cfg.password.get_secret_value())
    if cfg.token is not None:
        return BearerToken(cfg.token.get_secret_value())
    if cfg.token_file is not None:
        path = cfg.token_file.expanduser()
        return BearerToken(source=_file_source(path), describe=f"token_file {path}")
    command = cfg.token_command
    argv = shlex.split(command) if isinstance(command, str) else list(command or [])
    program = Path(argv[0]).name if argv else "<empty>"
    return BearerToken(source=_command_source(argv), describe=f"token_command {program}")
