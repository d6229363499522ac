"""The one redaction of secrets in URLs, and of URLs in text and reprs.

Every place tesengine prints a URL (messages, log lines, progress and
result lines, ``config show``, reprs) passes it through :func:`redact_url`.
Hidden: a URL's userinfo (user and password) and the values of secret query or
fragment parameters (Azure SAS ``sig``, ``X-Amz-Signature``,
``X-Amz-Credential``, ``token``, ``access_token``, ``key``...). Everything
else stays as given, so a redacted URL still names its object.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "redact_query", "redact_repr", "redact_text", "redact_url"]

REDACTED = "<redacted>"
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
#: ``scheme:`` and the slashes after it; also matches typos such as ``htps:/``.
_SCHEME = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9+.-]*):/*")


def redact_url(url: str) -> str:
    """Return ``url`` with its secrets replaced by ``<redacted>``; everything else as given.

    Hidden: the whole userinfo (``https://<redacted>@host/``; but the container
    name of ``abfs://container@account...``) and the values of secret
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
    # The user name goes too: it is often a token, or half of the credential.
    if ":" not in userinfo and (scheme in _CONTAINER_USERINFO or userinfo == REDACTED):
        return userinfo
    return REDACTED


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
        return f"{key}={REDACTED}"
    return pair


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_QUERY_KEYS or any(part in name for part in _SECRET_KEY_PARTS)


def redact_query(query: str) -> str:
    """A query string (``sv=...&sig=...``, no ``?``) with its secret values hidden."""
    return _redact_params(query)


#: A URL inside free text: from its scheme to the next blank or quote.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_repr(value: object) -> str:
    """``repr(value)`` with the secrets of every URL in it hidden.

    Dataclasses (their ``repr=True`` fields), mappings, lists and tuples are
    walked; strings go through :func:`redact_text`; anything else is
    ``repr()``-ed as it is (so it must redact itself). URL-holding public
    values use it as their ``__repr__``.
    """
    if isinstance(value, str):
        return repr(redact_text(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = ", ".join(
            f"{f.name}={redact_repr(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
            if f.repr
        )
        return f"{type(value).__qualname__}({shown})"
    if isinstance(value, Mapping):
        items = ", ".join(f"{redact_repr(k)}: {redact_repr(v)}" for k, v in value.items())
        return f"{{{items}}}" if isinstance(value, dict) else f"{type(value).__name__}({{{items}}})"
    if isinstance(value, tuple):
        inner = ", ".join(redact_repr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return f"[{', '.join(redact_repr(v) for v in value)}]"
    return repr(value)
