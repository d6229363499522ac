"""Secrets never printed: the one URL redaction, the reprs that hold URLs, serve's credentials."""

from __future__ import annotations

import base64
import random
import string
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from tesengine import RemoteDirectory, RemoteFile, StageResult, Task
from tesengine.engine.request import OutputTarget
from tesengine.engine.result import interpret, make_outputs
from tesengine.engine.run import Submission
from tesengine.engine.validate import UrlInput
from tesengine.errors import redact_url
from tesengine.storage import ObjectInfo
from tesengine.storage.urls import parse_url
from tesengine.tes import models as wire
from tests.fixtures.tes_server import ServedTes
from tests.support import user_env

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
        ("https://alice:pw@h/x", "https://<redacted>@h/x"),
        ("https://ghp_token@github.com/x", "https://<redacted>@github.com/x"),
        ("htps://user:PASS@host/x", "htps://<redacted>@host/x"),
        ("https:/user:PASS@host/x", "https:/<redacted>@host/x"),
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


# -- reprs of values that hold URLs ---------------------------------------------

SAS = f"sv=2022-11-02&sp=racwl&sig={SECRET}"
BLOB = f"https://acct.blob.core.windows.net/c/out/t-1/x.txt?{SAS}"
SIGNED = f"s3://bucket/in/file/ab?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}&X-Amz-Date=1"


def _url_holders() -> list[object]:
    """Every public (and internal) value that holds a URL, built as the engine builds them."""
    outputs = make_outputs(
        (OutputTarget("x", BLOB, False), OutputTarget("d", BLOB.replace("x.txt", "d"), True)),
        None,
    )
    finished = wire.TesTask(
        id="t-1",
        state=wire.State.COMPLETE,
        executors=[wire.Executor(image="alpine", command=["cat", "/in/a"])],
        inputs=[wire.Input(path="/in/a", url=SIGNED)],
        outputs=[wire.Output(path="/out/x.txt", url=BLOB)],
        logs=[wire.TaskLog(logs=[wire.ExecutorLog(exit_code=0, stdout=f"wrote {BLOB}\n")])],
    )
    result = interpret(finished, "t", outputs, RemoteDirectory(BLOB))
    return [
        RemoteFile(BLOB),
        RemoteDirectory(f"https://u:{SECRET}@h.example/out"),
        result,
        Task(name="t", executors=[], inputs={"/in/a": SIGNED, "/in/b": RemoteFile(BLOB)}),
        StageResult(source="/data/a", url=SIGNED, kind="file", uploaded=True),
        ObjectInfo(url=BLOB, size=1, etag=None, last_modified=None),
        parse_url(BLOB),
        Submission("t-1", BLOB, (OutputTarget("x", BLOB, False),), BLOB),
        UrlInput("/in/a", SIGNED, directory=False),
        finished,
        wire.Input(path="/in/a", url=SIGNED),
    ]


@pytest.mark.parametrize("value", _url_holders(), ids=lambda v: type(v).__name__)
def test_reprs_of_url_holding_values_hide_secrets(value: object) -> None:
    for shown in (repr(value), str(value), f"{value!r}", f"{[value]}"):
        assert SECRET not in shown, shown
        assert "<redacted>" in shown
    assert (
        "acct.blob.core.windows.net" in repr(value)
        or "bucket" in repr(value)
        or ("h.example" in repr(value))
    )


# -- tesengine serve credentials: not in ps --------------------------------------

TOKEN = "tok-5d1e-never-in-ps"
PASSWORD = "pw-77c3-never-in-ps"


def _status(served: ServedTes, authorization: str | None) -> int:
    request = urllib.request.Request(f"{served.api}/tasks")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _cmdline(pid: int) -> str:
    """What ``ps`` shows every local user: the process's argv."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "credential"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("source", ["file", "env"])
@pytest.mark.parametrize("kind", ["bearer", "basic"])
def test_serve_takes_credentials_from_a_file_or_the_environment(
    serve_tes: Callable[..., ServedTes], tmp_path: Path, kind: str, source: str
) -> None:
    secret = TOKEN if kind == "bearer" else f"alice:{PASSWORD}"
    header = (
        f"Bearer {TOKEN}"
        if kind == "bearer"
        else "Basic " + base64.b64encode(secret.encode()).decode()
    )
    if source == "file":
        served = serve_tes(args=[f"--{kind}-file", str(_secret_file(tmp_path, secret))])
    else:
        served = serve_tes(env={f"TESENGINE_SERVE_{kind.upper()}": secret})
    assert _status(served, None) == 401
    assert _status(served, header) == 200
    shown = _cmdline(served.proc.pid) + served.log()
    assert TOKEN not in shown
    assert PASSWORD not in shown
    assert "warning" not in served.log()


def test_serve_warns_about_credentials_others_can_see(
    serve_tes: Callable[..., ServedTes], tmp_path: Path
) -> None:
    readable = _secret_file(tmp_path, TOKEN)
    readable.chmod(0o644)
    served = serve_tes(args=["--bearer-file", str(readable)])
    assert _status(served, f"Bearer {TOKEN}") == 200
    assert f"{readable} can be read by other users (chmod 600" in served.log()
    on_argv = serve_tes(args=["--bearer", TOKEN])  # still accepted, with a warning
    assert _status(on_argv, f"Bearer {TOKEN}") == 200
    assert "--bearer on the command line is visible in ps" in on_argv.log()
    assert TOKEN not in on_argv.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bearer-file", "{missing}"], "--bearer-file: cannot read {missing}: No such file"),
        (["--basic-file", "{two_lines}"], "--basic-file: {two_lines} must hold one non-empty line"),
        (["--basic-file", "{no_colon}"], "--basic-file {no_colon}: expected USER:PASS"),
        (["--bearer", "x", "--bearer-file", "{no_colon}"], "--bearer and --bearer-file: give one"),
    ],
)
def test_serve_credential_errors_are_one_line_and_quote_no_secret(
    tmp_path: Path, args: list[str], message: str
) -> None:
    two_lines = tmp_path / "two"
    two_lines.write_text(f"alice:{PASSWORD}\nmore\n")
    no_colon = _secret_file(tmp_path, PASSWORD)
    fill = {
        "missing": str(tmp_path / "nope"),
        "two_lines": str(two_lines),
        "no_colon": str(no_colon),
    }
    argv = ["serve", "--port", "0", "--work-dir", str(tmp_path / "w"), "--runtime", "noop"]
    done = subprocess.run(
        [sys.executable, "-m", "tesengine", *argv, *(a.format(**fill) for a in args)],
        capture_output=True,
        text=True,
        timeout=30,
        env=user_env(),
        check=False,
    )
    assert done.returncode == 2
    assert message.format(**fill) in done.stderr
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_serve_basic_from_the_environment_must_have_a_user(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tesengine", "serve", "--port", "0", "--runtime", "noop",
         "--work-dir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**user_env(), "TESENGINE_SERVE_BASIC": PASSWORD},
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "tesengine: TESENGINE_SERVE_BASIC: expected USER:PASS" in done.stderr
    assert PASSWORD not in done.stderr
