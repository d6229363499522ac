"""Secrets never printed: the one URL redaction, the reprs that hold URLs, serve's credentials."""

from __future__ import annotations

import random
import string
from urllib.parse import quote

import pytest

from tesengine.errors import redact_url

SECRET = "S3cr3t-never-show-me"

#: Query parameters that carry a secret in real URLs (Azure SAS, AWS and GCS
#: pre-signed URLs, OAuth and API keys), spelled as providers spell them.
SECRET_PARAMS = (
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
    "token",
    "access_token",
    "key",
    "api_key",
    "Signature",
    "sessionToken",
    "client_secret",
)
#: Parameters that are not secret and keep a URL recognisable.
PLAIN_PARAMS = ("sv", "se", "sp", "sr", "spr", "versionId", "X-Amz-Date", "X-Amz-Expires", "alt")
SCHEMES = ("https", "http", "s3", "gs", "az", "abfss", "memory", "file", "htps")


def _word(rng: random.Random, size: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(size))


def _random_url(rng: random.Random) -> tuple[str, list[str]]:
    """A URL with secrets hidden in random places; returns it and its non-secret params."""
    scheme = rng.choice(SCHEMES)
    host = rng.choice([f"{_word(rng)}.example", "127.0.0.1:8080", "[::1]:9000", _word(rng)])
    userinfo = rng.choice(["", f"{_word(rng)}:{SECRET}@", f"{SECRET}@"])
    if scheme == "abfss":
        userinfo = rng.choice(["", f"{_word(rng)}@", f"{_word(rng)}:{SECRET}@"])
    path = "/".join(_word(rng) for _ in range(rng.randint(0, 3)))
    plain = [f"{p}={_word(rng)}" for p in rng.sample(PLAIN_PARAMS, rng.randint(0, 3))]
    secret = [
        f"{rng.choice([p, p.lower(), quote(p, safe='')])}={SECRET}{_word(rng, 2)}"
        for p in rng.sample(SECRET_PARAMS, rng.randint(1, 3))
    ]
    params = plain + secret
    rng.shuffle(params)
    url = f"{scheme}://{userinfo}{host}/{path}?{'&'.join(params)}"
    if rng.random() < 0.3:
        url += f"#access_token={SECRET}"
    return url, plain


def test_redact_url_hides_every_secret_and_keeps_the_rest() -> None:
    """Property-style: 2,000 random URLs; no secret survives, every plain parameter does."""
    rng = random.Random(1313)
    for _ in range(2000):
        url, plain = _random_url(rng)
        shown = redact_url(url)
        assert SECRET not in shown, url
        for param in plain:
            assert param in shown, (url, shown)
        assert redact_url(shown) == shown, url  # idempotent
        assert shown.split("://")[0] == url.split("://")[0]


def test_redact_url_leaves_urls_without_secrets_unchanged() -> None:
    rng = random.Random(7)
    for _ in range(500):
        scheme = rng.choice(SCHEMES)
        url = f"{scheme}://{_word(rng)}.example/{_word(rng)}?sv={_word(rng)}&se=2030-01-01"
        assert redact_url(url) == url
    for url in (
        "http://[::1]:8080/ga4gh/tes/v1/tasks?view=FULL",
        "abfss://container@acct.dfs.core.windows.net/key",
        "file:///tmp/a%20b?x=1",
        "/plain/local/path",
        "",
    ):
        assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:pw@h/x", "https://alice:<redacted>@h/x"),
        ("https://ghp_token@github.com/x", "https://<redacted>@github.com/x"),
        ("htps://user:PASS@host/x", "htps://user:<redacted>@host/x"),
        ("https:/user:PASS@host/x", "https:/user:<redacted>@host/x"),
        (
            "https://a.blob.core.windows.net/c/k?sv=2022-11-02&sp=r&sig=abc%2Bdef",
            "https://a.blob.core.windows.net/c/k?sv=2022-11-02&sp=r&sig=<redacted>",
        ),
        (
            "s3://b/k?X-Amz-Credential=AKIA%2F&X-Amz-Date=1",
            "s3://b/k?X-Amz-Credential=<redacted>&X-Amz-Date=1",
        ),
    ],
)
def test_redact_url_examples(url: str, expected: str) -> None:
    assert redact_url(url) == expected
