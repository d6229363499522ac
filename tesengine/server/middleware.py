"""What sits around every request: error replies, authentication, the protocol log.

Client input never causes a 500 or a traceback in the log: a bad body is a
400 naming the field, bad credentials (whatever their bytes) a 401, a task
database that cannot commit a 503 with ``Retry-After``, and a request the
HTTP parser refuses (a NUL byte in a header, say) one line in the log.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import InvalidTask, StoreUnavailable

__all__ = ["auth_middleware", "error_middleware", "protocol_logger"]

log = logging.getLogger("tesengine.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER = "1"
"""Seconds a client should wait after a 503 (the database was busy)."""


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn the errors a request can meet into JSON replies; log only server faults."""
    try:
        return await handler(request)
    except InvalidTask as exc:
        return error_reply(400, str(exc))
    except StoreUnavailable:
        # Logged once by the store; the task was not created, so a retry is safe.
        return error_reply(
            503,
            "the task database is busy; nothing was created, try again",
            {"Retry-After": RETRY_AFTER},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_reply(exc.status, exc.reason, allow)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_reply(500, "internal server error")


def auth_middleware(basic: tuple[str, str] | None, bearer: str | None) -> Any:
    """Require ``Authorization: Basic ...`` or ``Bearer ...`` (scheme in any case)."""
    accepted: dict[str, bytes] = {}
    if basic is not None:
        accepted["basic"] = base64.b64encode(":".join(basic).encode())
    if bearer is not None:
        accepted["bearer"] = bearer.encode()
    challenge = "Basic" if basic is not None else "Bearer"

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not _credentials_ok(given, accepted):
            detail = "missing credentials" if not given else "credentials refused"
            return error_reply(401, detail, {"WWW-Authenticate": f'{challenge} realm="tes"'})
        return await handler(request)

    return auth


def _credentials_ok(header: str, accepted: dict[str, bytes]) -> bool:
    scheme, _sep, credentials = header.strip().partition(" ")
    want = accepted.get(scheme.lower())
    # Headers arrive decoded with surrogateescape: any byte maps back, none raises.
    given = credentials.strip().encode("utf-8", "surrogateescape")
    # compare_digest even without a match: the time does not tell which part was wrong.
    return hmac.compare_digest(given, want or b"\0" * len(given)) and want is not None


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with a malformed request logged as one line."""

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            first = (exc.message or "").strip().splitlines()
            reason = first[0][:200] if first else f"HTTP {exc.code}"
            peer = args[0] if args else "?"
            self.logger.warning("refused a malformed HTTP request from %s: %s", peer, reason)
            return
        self.logger.exception(msg, *args, **kwargs)


def protocol_logger() -> logging.Logger:
    """A logger for ``web.AppRunner(logger=...)``: parser errors are one line, not a traceback."""
    return cast(logging.Logger, _ProtocolLog(logging.getLogger("aiohttp.server"), {}))
