"""Configuration: Sprocket's TOML unchanged, strict validation, sources, secrets."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from tesengine import ConfigError, load_config
from tesengine.config import find_config_file, is_loopback
from tests.support import run_cli

# DESIGN.md's block with its placeholders filled in; comments kept verbatim.
SEED = """\
[run.backends.default]
type = "tes"
url = "https://tes.example.org"
inputs = "s3://bucket/inputs"     # where local inputs are uploaded
outputs = "s3://bucket/outputs"    # where the server uploads outputs
interval = 60                      # seconds between polls; default 60
[run.backends.default.auth]
type = "basic"                     # username, password
username = "alice"
password = "hunter2-secret"
"""

BASE = """\
[run.backends.default]
type = "tes"
url = "https://tes.example.org"
inputs = "s3://bucket/inputs"
outputs = "s3://bucket/outputs"
"""


def write(tmp_path: Path, text: str, name: str = "sprocket.toml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_seed_block_loads_unchanged(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEED))
    backend = config.backend
    assert (backend.type, backend.url, backend.interval) == ("tes", "https://tes.example.org", 60)
    assert (backend.inputs, backend.outputs) == ("s3://bucket/inputs", "s3://bucket/outputs")
    assert backend.auth is not None and backend.auth.type == "basic"
    assert backend.auth.username == "alice"
    assert backend.auth.password.get_secret_value() == "hunter2-secret"


def test_defaults_and_other_sections_ignored(tmp_path: Path) -> None:
    text = BASE + '\n[run.backends.local]\ntype = "docker"\nwhatever = 1\n[workflow]\nx = 1\n'
    backend = load_config(write(tmp_path, text)).backend
    assert backend.interval == 60
    assert backend.auth is None
    assert backend.on_close == "cancel"


def test_bearer_token(tmp_path: Path) -> None:
    text = BASE + '[run.backends.default.auth]\ntype = "bearer"\ntoken = "tok-123"\n'
    auth = load_config(write(tmp_path, text)).backend.auth
    assert auth is not None and auth.type == "bearer"
    assert auth.token is not None and auth.token.get_secret_value() == "tok-123"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("intervall = 5\n", "run.backends.default.intervall: unknown key"),
        ('interval = "soon"\n', "run.backends.default.interval: Input should be a valid number"),
        ("interval = 0\n", "run.backends.default.interval: Input should be greater than 0"),
        ("interval = -3\n", "run.backends.default.interval: Input should be greater than 0"),
        ("insecure = 3\n", "run.backends.default.insecure"),
        ('on_close = "explode"\n', "run.backends.default.on_close"),
        (
            '[run.backends.default.auth]\ntype = "bearer"\ntokn = "x"\n',
            "run.backends.default.auth.tokn: unknown key",
        ),
        (
            '[run.backends.default.auth]\ntype = "bearer"\n',
            "bearer auth needs exactly one of token, token_file, token_command",
        ),
        (
            '[run.backends.default.auth]\ntype = "digest"\n',
            "run.backends.default.auth",
        ),
        (
            '[run.backends.default.auth]\ntype = "basic"\nusername = "u"\n',
            "run.backends.default.auth.password: required key is missing",
        ),
        ("[run.storage.s3]\nendpiont = 'http://x'\n", "run.storage.s3.endpiont: unknown key"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, extra: str, expected: str) -> None:
    path = write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message
    assert message.startswith(str(path))


@pytest.mark.parametrize("key", ["url", "inputs", "outputs"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    text = "\n".join(line for line in BASE.splitlines() if not line.startswith(key))
    with pytest.raises(ConfigError, match=rf"run\.backends\.default\.{key}: required key"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("url", "ftp://tes.example.org", "expected an http:// or https:// URL"),
        ("url", "tes.example.org", "expected an http:// or https:// URL"),
        ("inputs", "ftp://host/x", "unsupported URL scheme 'ftp'"),
        ("outputs", "/just/a/path", "unsupported URL scheme '(none)'"),
    ],
)
def test_unsupported_schemes(tmp_path: Path, key: str, value: str, expected: str) -> None:
    text = BASE.replace(f"{key} = ", f"{key} = {value!r}\n#", 1)
    with pytest.raises(
        ConfigError, match=rf"run\.backends\.default\.{key}: .*{re.escape(expected)}"
    ):
        load_config(write(tmp_path, text))


def test_backend_of_another_type(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[run.backends.hpc]\ntype = "slurm"\n')
    with pytest.raises(ConfigError, match=r"run\.backends\.hpc\.type: is 'slurm'"):
        load_config(path, backend="hpc")


def test_missing_backend_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \[run\.backends\.prod\] table"):
        load_config(write(tmp_path, BASE), backend="prod")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[run.backends.default\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_no_config_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no configuration found"):
        load_config()


def test_file_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_file() is None
    write(tmp_path, BASE, "tesengine.toml")
    assert find_config_file() == Path("tesengine.toml")
    write(tmp_path, BASE, "sprocket.toml")
    assert find_config_file() == Path("sprocket.toml")
    monkeypatch.setenv("TESENGINE_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_file() == tmp_path / "env.toml"
    assert find_config_file(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"


def test_sources_order_init_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BASE + "interval = 30\nretries = 4\n")
    monkeypatch.setenv("TESENGINE_INTERVAL", "5")
    monkeypatch.setenv("TESENGINE_MAX_CONCURRENCY", "17")
    config = load_config(path, interval=2.5)
    assert config.backend.interval == 2.5  # init beats env
    assert config.backend.max_concurrency == 17  # env beats the default
    assert config.backend.retries == 4  # file where nothing overrides


def test_env_overrides_nested_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BASE + '[run.backends.default.auth]\ntype = "bearer"\ntoken = "file"\n')
    monkeypatch.setenv("TESENGINE_AUTH__TOKEN", "from-env")
    auth = load_config(path).backend.auth
    assert auth is not None and auth.type == "bearer"
    assert auth.token is not None and auth.token.get_secret_value() == "from-env"


def test_env_only_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TESENGINE_TYPE", "tes")
    monkeypatch.setenv("TESENGINE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TESENGINE_INPUTS", "file:///tmp/in")
    monkeypatch.setenv("TESENGINE_OUTPUTS", "file:///tmp/out")
    config = load_config()
    assert config.source is None
    assert config.backend.url == "http://127.0.0.1:9"


def test_permission_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tesengine")
    open_file = write(tmp_path, SEED, "open.toml", mode=0o644)
    load_config(open_file)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("chmod 600" in w and str(open_file) in w for w in warnings)
    caplog.clear()
    load_config(write(tmp_path, SEED, "closed.toml", mode=0o600))
    load_config(write(tmp_path, BASE, "nosecret.toml", mode=0o644))
    assert not [r for r in caplog.records if "chmod" in r.getMessage()]


def test_credentials_refused_over_plain_http(tmp_path: Path) -> None:
    remote = SEED.replace("https://tes.example.org", "http://tes.example.org")
    with pytest.raises(ConfigError, match="refusing to send credentials over plain http"):
        load_config(write(tmp_path, remote))
    assert load_config(write(tmp_path, remote, "a.toml"), insecure=True).backend.insecure
    local = SEED.replace("https://tes.example.org", "http://127.0.0.1:8000")
    assert load_config(write(tmp_path, local, "b.toml")).backend.url == "http://127.0.0.1:8000"
    no_auth = BASE.replace("https://", "http://")
    assert load_config(write(tmp_path, no_auth, "c.toml")).backend.auth is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [("localhost", True), ("127.0.0.5", True), ("::1", True), ("[::1]", True), ("10.0.0.1", False)],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_secrets_never_shown(tmp_path: Path, debug_logs: pytest.LogCaptureFixture) -> None:
    text = SEED + "[run.storage.s3.auth]\naccess_key_id = 'AKIA'\nsecret_access_key = 's3-secret'\n"
    config = load_config(write(tmp_path, text, mode=0o644))
    shown = [repr(config), str(config), str(config.redacted()), debug_logs.text]
    for secret in ("hunter2-secret", "s3-secret"):
        assert all(secret not in text for text in shown)
    assert config.redacted()["run.storage"]["s3"]["auth"]["secret_access_key"] == "<redacted>"
    bad = write(tmp_path, SEED.replace("interval = 60", 'interval = "hunter2-secret-x"'), "x.toml")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "hunter2-secret" not in str(info.value)


def test_cli_config_check_and_show(tmp_path: Path) -> None:
    path = write(tmp_path, SEED)
    check = run_cli("config", "check", str(path), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "backend 'default' is valid" in check.stdout
    show = run_cli("config", "show", str(path), cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert "<redacted>" in show.stdout
    assert "hunter2-secret" not in show.stdout + show.stderr


def test_cli_bad_config_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "intervall = 5\n")
    result = run_cli("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "run.backends.default.intervall: unknown key" in lines[0]


def test_cli_bad_usage_exit_2(tmp_path: Path) -> None:
    result = run_cli("config", "frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# --- issue 14 "Errors" and issue 13 item 13: suggestions, blame, redaction ---------------


def test_config_typos_get_a_suggestion(tmp_path: Path) -> None:
    text = BASE + 'intervall = 5\n[run.backends.default.auth]\ntype = "basic"\nusername = "u"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text + 'pasword = "x"\n'))
    message = str(info.value)
    assert "run.backends.default.intervall: unknown key (did you mean 'interval'?)" in message
    assert "run.backends.default.auth.pasword: unknown key (did you mean 'password'?)" in message
    assert "run.backends.default.auth.password: required key is missing" in message
    assert ".basic." not in message  # the union's tag is not a place in the file


def test_an_env_value_is_blamed_on_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BASE + "interval = 30\n")
    monkeypatch.setenv("TESENGINE_INTERVAL", "abc")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith("environment variable TESENGINE_INTERVAL='abc': ")
    assert str(path) not in message  # the file's interval (30) is fine


def test_config_show_marks_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BASE + "interval = 30\n")
    monkeypatch.setenv("TESENGINE_RETRIES", "3")
    origins = load_config(path, read_timeout=5).redacted()["origins"]
    assert origins["url"] == origins["interval"] == str(path)
    assert origins["retries"] == "env TESENGINE_RETRIES"
    assert origins["read_timeout"] == "argument"
    assert origins["connect_timeout"] == "default"


SECRETS_IN_URLS = """\
[run.backends.default]
type = "tes"
url = "https://alice:URLPASS@tes.example.org"
inputs = "az://acct/c/in?sv=2024&sig=SASSIG1"
outputs = "https://acct.blob.core.windows.net/c/out?sp=rw&sig=SASSIG2"
insecure = true
[run.backends.default.auth]
type = "bearer"
token_command = ["get-token", "--secret", "CMDSECRET"]
"""


def test_config_show_redacts_urls_and_token_command(tmp_path: Path) -> None:
    shown = run_cli("config", "show", str(write(tmp_path, SECRETS_IN_URLS)), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for secret in ("URLPASS", "alice", "SASSIG1", "SASSIG2", "CMDSECRET", "--secret"):
        assert secret not in shown.stdout + shown.stderr, secret
    backend = json.loads(shown.stdout)["run.backends.default"]
    assert backend["url"] == "https://<redacted>@tes.example.org"
    assert backend["inputs"].startswith("az://acct/c/in?sv=2024&sig=")
    assert backend["auth"]["token_command"] == ["get-token", "<redacted>"]


def test_a_url_typo_does_not_quote_the_password(tmp_path: Path) -> None:
    text = BASE.replace("https://tes.example.org", "htps://user:PASS123@tes.example.org")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "got 'htps://<redacted>@tes.example.org'" in str(info.value)
    assert "PASS123" not in str(info.value) and "user" not in str(info.value)


def test_world_readable_sas_url_alone_gets_the_chmod_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tesengine")
    text = BASE.replace('"s3://bucket/inputs"', '"az://acct/c/in?sv=1&sig=SASSIG"')
    path = write(tmp_path, text, mode=0o644)
    load_config(path)
    warnings = [r.getMessage() for r in caplog.records if "chmod 600" in r.getMessage()]
    assert warnings and str(path) in warnings[0]
    assert "SASSIG" not in caplog.text
    caplog.clear()
    load_config(write(tmp_path, BASE, name="plain.toml", mode=0o644))  # no secret: no warning
    assert "chmod" not in caplog.text
