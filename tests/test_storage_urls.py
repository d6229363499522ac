"""URL parsing and derived URLs: pure, no I/O."""

from __future__ import annotations

import pytest

from tesengine.config import S3Storage, StorageConfig
from tesengine.errors import StorageError
from tesengine.storage import is_url, join_url, parse_url
from tesengine.storage.stores import azure_options, s3_options

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("url", "provider", "bucket", "key"),
    [
        ("s3://bkt/in/file/x", "s3", "bkt", "in/file/x"),
        ("s3a://bkt/k", "s3", "bkt", "k"),
        ("gs://bkt/a/b", "gs", "bkt", "a/b"),
        ("https://storage.googleapis.com/bkt/a/b%20c", "gs", "bkt", "a/b c"),
        ("az://cont/a", "az", "cont", "a"),
        ("azure://cont/a", "az", "cont", "a"),
        ("abfss://cont@acct.dfs.core.windows.net/a/b", "az", "cont", "a/b"),
        ("https://acct.blob.core.windows.net/cont/a/b?sv=1&sig=s", "az", "cont", "a/b"),
        ("https://s3.eu-west-1.amazonaws.com/bkt/k", "s3", "bkt", "k"),
        ("https://bkt.s3.us-east-2.amazonaws.com/k/l", "s3", "bkt", "k/l"),
        ("file:///tmp/x%20y/z", "file", "", "tmp/x y/z"),
        ("memory://mem/a", "memory", "mem", "a"),
        ("https://example.org/data/f.txt", "http", "https://example.org", "data/f.txt"),
    ],
)
def test_parse_url_maps_provider_bucket_and_key(
    url: str, provider: str, bucket: str, key: str
) -> None:
    loc = parse_url(url)
    assert (loc.provider, loc.bucket, loc.key) == (provider, bucket, key)


def test_gcs_url_round_trips_through_url_for() -> None:
    loc = parse_url("gs://bkt/inputs")
    assert loc.url_for(f"inputs/file/{HEX}") == f"gs://bkt/inputs/file/{HEX}"
    assert parse_url(loc.url_for("inputs/x")).key == "inputs/x"


def test_azure_https_url_keeps_account_and_sas_on_derived_urls() -> None:
    base = "https://acct.blob.core.windows.net/cont/inputs?sv=2022&sig=secret%3D"
    loc = parse_url(base)
    assert loc.account == "acct"
    assert loc.query == "sv=2022&sig=secret%3D"
    derived = join_url(base, "directory", HEX, "sub dir/a.txt")
    assert derived == (
        f"https://acct.blob.core.windows.net/cont/inputs/directory/{HEX}/sub%20dir/a.txt"
        "?sv=2022&sig=secret%3D"
    )
    assert parse_url(derived).key == f"inputs/directory/{HEX}/sub dir/a.txt"
    assert loc.url_for("inputs/z").endswith("/cont/inputs/z?sv=2022&sig=secret%3D")


def test_join_url_keeps_query_and_collapses_slashes() -> None:
    assert join_url("az://c/in/?se=1&sig=x", "file", HEX) == f"az://c/in/file/{HEX}?se=1&sig=x"
    assert join_url("s3://b", "/file/", HEX) == f"s3://b/file/{HEX}"
    assert join_url("s3://b/in", "a b") == "s3://b/in/a b"
    assert join_url("file:///tmp/in", "a b") == "file:///tmp/in/a%20b"


def test_is_url_tells_urls_from_paths() -> None:
    for url in ("s3://b/k", "gs://b/k", "az://c/k", "https://h/p", "http://h/p", "file:///x"):
        assert is_url(url)
    for path in ("/tmp/x", "relative/file", "C:\\data", "weird:name"):
        assert not is_url(path)


@pytest.mark.parametrize("url", ["ftp://h/x", "s3:///nobucket", "file://remote/x", "nourl"])
def test_unsupported_urls_raise_storage_error(url: str) -> None:
    with pytest.raises(StorageError):
        parse_url(url)


def test_s3_options_allow_http_only_for_loopback_or_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loc = parse_url("s3://b/k")
    local = StorageConfig(s3=S3Storage(endpoint="http://127.0.0.1:9000"))
    remote = StorageConfig(s3=S3Storage(endpoint="http://minio.example:9000"))
    assert s3_options(local, loc)["client_options"] == {"allow_http": True}
    assert s3_options(remote, loc)["client_options"] == {"allow_http": False}
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    assert s3_options(remote, loc)["client_options"] == {"allow_http": True}
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4566")
    assert s3_options(StorageConfig(), loc)["client_options"] == {"allow_http": True}


def test_s3_region_from_https_url() -> None:
    loc = parse_url("https://s3.eu-west-3.amazonaws.com/bkt/k")
    assert s3_options(StorageConfig(), loc)["region"] == "eu-west-3"


def test_azure_sas_on_url_is_used_as_sas_key() -> None:
    loc = parse_url("https://acct.blob.core.windows.net/cont/in?sv=1&sig=abc")
    options = azure_options(StorageConfig(), loc)
    assert options["account_name"] == "acct"
    assert options["sas_key"] == "sv=1&sig=abc"


@pytest.mark.parametrize(
    "base", ["s3://b/in", "az://c/in?sv=1&sig=s", "memory://m/in", "file:///tmp/in", "gs://b"]
)
@pytest.mark.parametrize("name", ["a b.txt", "100%.txt", "50%41", "q?x=1", "h#f", "ü/ö ✓"])
def test_every_key_survives_a_trip_through_its_url(base: str, name: str) -> None:
    root = parse_url(base)
    url = join_url(base, name)
    loc = parse_url(url)
    assert loc.key == f"{root.key}/{name}".lstrip("/")
    assert loc.query == root.query  # the SAS stays on derived URLs
    assert loc.relative_to(root) == name


def test_bucket_urls_escape_only_what_changes_their_meaning() -> None:
    assert join_url("s3://b/in", "a b ü") == "s3://b/in/a b ü"  # as the CLIs write it
    assert join_url("s3://b/in", "p%q?r#s") == "s3://b/in/p%25q%3Fr%23s"
    assert parse_url("s3://b/100%.txt").key == "100%.txt"  # a lone % is itself


def test_relative_to_matches_whole_segments_and_refuses_dot_dot() -> None:
    root = parse_url("s3://b/out/run-1?sig=x")
    assert parse_url("s3://b/out/run-1/a/b").relative_to(root) == "a/b"
    assert parse_url("s3://b/out/run-10/a").relative_to(root) is None
    assert parse_url("s3://other/out/run-1/a").relative_to(root) is None
    assert parse_url("s3://b/out/run-1").relative_to(root) is None
    with pytest.raises(StorageError, match="unsafe relative path"):
        parse_url("s3://b/out/run-1/../x").relative_to(root)
