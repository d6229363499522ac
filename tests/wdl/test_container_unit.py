"""Unit tests of the miniwdl backend's pure parts: the TES task it builds, failures, paths."""

from __future__ import annotations

import concurrent.futures
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from tesengine import RemoteDirectory, RemoteFile, TaskFailed

WDL = pytest.importorskip("WDL", reason="miniwdl (pip install 'tesengine[miniwdl]')")

from WDL.runtime import config  # noqa: E402
from WDL.runtime.error import Interrupted  # noqa: E402

from tesengine.integrations.miniwdl.container import TesTaskContainer, _disk_gb  # noqa: E402
from tesengine.integrations.miniwdl.paths import INPUTS_DIR, UrlMemory, map_inputs  # noqa: E402
from tesengine.integrations.miniwdl.settings import UNLIMITED, Settings  # noqa: E402

LOG = logging.getLogger("test")


@pytest.fixture
def container(tmp_path: Path) -> TesTaskContainer:
    cfg = config.Loader(LOG)
    return TesTaskContainer(cfg, "call-x", str(tmp_path / "run"))


def runtime(container: TesTaskContainer, **values: Any) -> None:
    container.runtime_values.update(values)


def test_the_task_carries_image_resources_env_and_one_output(container: TesTaskContainer) -> None:
    runtime(
        container,
        docker="quay.io/biocontainers/samtools:1.19",
        cpu=4,
        memory_reservation=3 * 2**30,
        preemptible=2,
        gpu=True,
        env={"GREETING": "hi there"},
    )
    container._disk_gb = 20.0
    TesTaskContainer._parameters = frozenset({"gpu"})  # the server's service-info lists it
    task = container._task("echo hello")
    (executor,) = task.executors
    assert executor.image == "quay.io/biocontainers/samtools:1.19"
    assert executor.command[:2] == ["bash", "-c"]
    assert executor.command[-1] == "echo hello"  # the command as an argument, not a file
    assert dict(executor.env) == {"GREETING": "hi there"}
    res = task.resources
    assert res is not None
    assert (res.cpu_cores, res.ram_gb, res.disk_gb, res.preemptible) == (4, 3.0, 20.0, True)
    assert dict(res.backend_parameters) == {"gpu": "1"}
    assert dict(task.outputs) == {"task": "/mnt/miniwdl_task_container/"}
    TesTaskContainer._parameters = frozenset()  # a server that does not take it: not sent
    assert not container._task("echo hello").resources.backend_parameters  # type: ignore[union-attr]


def test_inputs_live_outside_the_collected_container_dir(
    container: TesTaskContainer, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("1")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("2")
    (tmp_path / "d").mkdir()
    container.add_paths([str(tmp_path / "a" / "x.txt")])
    container.add_paths([str(tmp_path / "b" / "x.txt"), str(tmp_path / "d") + "/"])
    mapped = container.input_path_map
    assert len(set(mapped.values())) == 3  # the second x.txt got its own slot
    for host, inside in mapped.items():
        assert inside.startswith(INPUTS_DIR + "/")
        assert not inside.startswith(container.container_dir)
        assert inside.endswith("/") == host.endswith("/")
    task = container._task("true")
    assert all(not p.startswith(container.container_dir) for p in task.inputs)
    with pytest.raises(WDL.Error.InputError, match="not found"):
        container.add_paths([str(tmp_path / "missing.txt")])


def test_a_long_command_is_staged_as_a_file(container: TesTaskContainer) -> None:
    task = container._task("echo " + "x" * 200_000)
    script = f"{container.container_dir}/command"
    assert isinstance(task.inputs[script], Path)
    assert len(task.executors[0].command) == 3


def test_return_codes_make_accepted_exits_succeed(container: TesTaskContainer) -> None:
    runtime(container, returnCodes=[0, 3])
    wrapper = container._task("exit 3").executors[0].command[2]
    assert 'case " 0 3 "' in wrapper
    assert "exit_code" in wrapper


def failed(state: str, codes: tuple[int | None, ...] = ()) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_exception(
        TaskFailed(
            f"task 'x' (id t1) {state}: why",
            task_id="t1",
            state=state,
            exit_codes=codes,
            stderr_tail="last words",
            system_logs=("the node went away",),
        )
    )
    return future


def test_preempted_is_interrupted_so_miniwdl_retries(container: TesTaskContainer) -> None:
    with pytest.raises(Interrupted) as info:
        container._failed(LOG, None, failed("PREEMPTED"))  # type: ignore[arg-type]
    assert container.failure_info is not None
    assert container.failure_info["tes_state"] == "PREEMPTED"
    assert "PREEMPTED" in str(info.value)


def test_system_error_carries_the_system_logs(container: TesTaskContainer) -> None:
    with pytest.raises(WDL.Error.RuntimeError) as info:
        container._failed(LOG, None, failed("SYSTEM_ERROR"))  # type: ignore[arg-type]
    assert not isinstance(info.value, Interrupted)
    assert container.failure_info is not None
    assert container.failure_info["system_logs"] == ["the node went away"]


def test_executor_error_returns_the_exit_code_and_keeps_the_stderr_tail(
    container: TesTaskContainer,
) -> None:
    assert container._failed(LOG, None, failed("EXECUTOR_ERROR", (5,))) == 5  # type: ignore[arg-type]
    assert Path(container.host_stderr_txt()).read_text() == "last words\n"


@pytest.mark.parametrize(
    ("spec", "gib"),
    [
        ("10", 10.0),
        ("local-disk 50 SSD", 50.0),
        ("2 GiB", 2.0),
        ("512 MiB", 0.5),
        ("1 TiB", 1024.0),
    ],
)
def test_disks(spec: str, gib: float) -> None:
    assert _disk_gb(spec) == gib


def test_url_memory_finds_files_and_whole_directories(tmp_path: Path) -> None:
    memory = UrlMemory()
    root = "file:///store/outputs/t-1/task"
    work = tmp_path / "work"
    (work / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.txt", "d/sub/b.txt", "top.txt"):
        (work / rel).write_text(rel)
        memory.remember(work / rel, root, f"work/{rel}")
    link = tmp_path / "out.txt"
    link.symlink_to(work / "top.txt")  # miniwdl's out/ links
    assert memory.file_url(str(link)) == f"{root}/work/top.txt"
    assert memory.directory_url(str(work / "d")) == f"{root}/work/d"
    assert memory.directory_url(str(work / "d" / "sub")) == f"{root}/work/d/sub"
    (work / "top.txt").write_text("changed!")  # size changes: no longer the download
    assert memory.file_url(str(link)) is None
    (work / "d" / "new.txt").write_text("local")  # a file that is not in the output
    assert memory.directory_url(str(work / "d")) is None
    os.unlink(work / "d" / "new.txt")
    os.unlink(work / "d" / "a.txt")  # one file fewer than the output holds
    assert memory.directory_url(str(work / "d")) is None


def test_sources_are_urls_for_remembered_paths(container: TesTaskContainer, tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert container._source(str(f)) == f
    TesTaskContainer.memory.remember(f, "s3://b/out/t/task", "work/f.txt")
    assert container._source(str(f)) == RemoteFile("s3://b/out/t/task/work/f.txt")
    assert isinstance(container._source(str(tmp_path) + "/"), Path | RemoteDirectory)


def test_map_inputs_share_a_slot_per_host_directory() -> None:
    taken: dict[str, str] = {}
    added = map_inputs(["/h/a/x", "/h/a/y/"], taken)
    assert added == {"/h/a/x": f"{INPUTS_DIR}/0/x", "/h/a/y/": f"{INPUTS_DIR}/0/y/"}


def test_settings_default_to_the_embedded_server() -> None:
    settings = Settings.from_cfg(config.Loader(LOG))
    assert settings.embedded
    assert settings.limits()["cpu"] == os.cpu_count()
    remote = Settings(config="/etc/sprocket.toml", cpu_limit=8)
    assert remote.limits() == {**UNLIMITED, "cpu": 8}


def test_settings_come_from_miniwdl_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIWDL__TESENGINE__CONFIG", "/x/sprocket.toml")
    monkeypatch.setenv("MINIWDL__TESENGINE__BACKEND", "tes2")
    monkeypatch.setenv("MINIWDL__TESENGINE__MEMORY_LIMIT", "2G")
    settings = Settings.from_cfg(config.Loader(LOG))
    assert (settings.config, settings.backend) == ("/x/sprocket.toml", "tes2")
    assert settings.memory_limit == 2 * 10**9 or settings.memory_limit == 2 * 2**30


@pytest.mark.parametrize("uri", ["s3://bucket/key.txt", "https://example.org/a.txt"])
def test_other_backends_keep_miniwdls_own_downloaders(uri: str) -> None:
    from tesengine.integrations.miniwdl.download import file_download

    cfg = config.Loader(LOG)
    assert cfg["scheduler"]["container_backend"] != "tesengine"
    first = next(file_download(cfg, LOG, uri))
    assert "task_wdl" in first  # miniwdl's download task (aws cli / aria2c), unchanged


def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIWDL__TESENGINE__CPU_LIMIT", "lots")
    with pytest.raises(WDL.Error.RuntimeError, match=r"\[tesengine\] cpu_limit = 'lots'"):
        Settings.from_cfg(config.Loader(LOG))


def test_the_engine_leaves_preempted_retries_to_miniwdl(tmp_path: Path) -> None:
    sprocket = tmp_path / "sprocket.toml"
    sprocket.write_text(
        '[run.backends.default]\ntype = "tes"\nurl = "http://127.0.0.1:9"\n'
        f'inputs = "{(tmp_path / "in").as_uri()}"\noutputs = "{(tmp_path / "out").as_uri()}"\n'
        "preempted_retries = 5\n"
    )
    backend = Settings(config=str(sprocket)).open()
    try:
        # PREEMPTED must reach miniwdl as Interrupted, counted by runtime.preemptible
        assert backend.config.backend.preempted_retries == 0
    finally:
        backend.close()
