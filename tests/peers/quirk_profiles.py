"""What TESK, TES on Azure and Funnel do differently, as :class:`Profile` values.

Every quirk carries a comment naming the peer's source file it was read
from (repository and path, as stored by the project's code search). The
defaults are the TES 1.1 specification's behaviour.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["AZURE", "FUNNEL", "PROFILES", "TESK", "Profile"]

_VIEWS = {"": "MINIMAL", "MINIMAL": "MINIMAL", "BASIC": "BASIC", "FULL": "FULL"}
_SPEC_INFO = {
    "id": "org.example.tes",
    "name": "TES",
    "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
    "organization": {"name": "Example", "url": "https://example.org"},
    "version": "1.0.0",
}


def b64_offset(offset: int, page: list[str]) -> str:
    """An opaque page token holding a list offset (a Kubernetes continue token)."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def offset_of(token: str, ids: list[str]) -> int:
    """The offset in a token made by :func:`b64_offset`; 0 for none or garbage."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(text.removeprefix("offset:"))
    except ValueError:
        return 0


def json_error(status: int, message: str) -> web.Response:
    """The TES 1.1 spec leaves error bodies open; a JSON message is the common case."""
    return web.json_response({"message": message}, status=status)


def _unchanged(doc: dict[str, Any], *_: Any) -> dict[str, Any]:
    return doc


def _cancel_is_noop(state: str) -> web.Response:
    return web.json_response({})


@dataclass(frozen=True, slots=True)
class Profile:
    """How one server deviates from the spec; see :mod:`tests.peers.quirky_tes`."""

    name: str
    source: str  # what the quirks were read from
    prefixes: tuple[str, ...] = ("/ga4gh/tes/v1",)
    service_info: Mapping[str, Any] = field(default_factory=lambda: dict(_SPEC_INFO))
    views: Mapping[str, str] = field(default_factory=lambda: dict(_VIEWS))
    new_id: Callable[[random.Random, int], str] = lambda rng, n: f"{rng.getrandbits(64):016x}"
    valid_id: Callable[[str], bool] = lambda task_id: True
    not_found: Callable[[str], str] = lambda task_id: f"task {task_id} not found"
    error: Callable[[int, str], web.Response] = json_error
    honours_tags: bool = True
    name_prefix_param: str | None = "name_prefix"
    page_size_params: tuple[str, ...] = ("page_size",)
    page_token_param: str = "page_token"
    default_page_size: int = 256
    page_size_range: tuple[int, int] = (1, 2047)
    clamp_page_size: bool = False
    newest_first: bool = False
    token_when_full: bool = False
    encode_token: Callable[[int, list[str]], str] = b64_offset
    decode_token: Callable[[str, list[str]], int] = offset_of
    cancel_final: Callable[[str], web.Response] = _cancel_is_noop
    throttle_every: int = 0
    logs_as_urls: bool = False
    log_url: Callable[[str, int, str], str] = lambda task_id, index, stream: ""
    shape_list: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged
    shape_task: Callable[[dict[str, Any], str, list[str]], dict[str, Any]] = _unchanged


# -- TESK ------------------------------------------------------------------

TESK = Profile(
    name="TESK",
    source="elixir-cloud-aai/TESK; EMBL-EBI-TSI tesk-api (uk.ac.ebi.tsc.tesk)",
    # TES 1.0 service-info: only name, doc and storage, no GA4GH id/type/organization
    # (tesk-api uk/ac/ebi/tsc/tesk/service/ServiceInfoService.java builds
    # TesServiceInfo().name(..).doc(..) and nothing else)
    service_info={"name": "TESK", "doc": "TESK on Kubernetes", "storage": []},
    # ids are the taskmaster job names: "task-" + 4 random bytes in hex
    # (elixir-cloud-aai/TESK tesk/api/kubernetes/constants.py JOB_NAME_TASKM_PREFIX,
    # JOB_NAME_TASKM_RAND_PART_LENGTH)
    new_id=lambda rng, n: f"task-{rng.getrandbits(32):08x}",
    # listing reads every taskmaster job of the user: tag filters and name_prefix
    # are not applied; the page token is Kubernetes' continue token
    # (elixir-cloud-aai/TESK tesk/api/ga4gh/tes/task/list_tasks.py handle_request)
    honours_tags=False,
    name_prefix_param=None,
    # errors are connexion/FOCA problem documents (title, status, detail)
    error=lambda status, message: web.json_response(
        {"title": "Error", "status": status, "detail": message}, status=status
    ),
)


# -- TES on Azure ------------------------------------------------------------


def _azure_id(rng: random.Random, n: int) -> str:
    # ids: the first eight characters of the workflow id, "_", a Guid in "N" format
    # (microsoft/ga4gh-tes src/TesApi.Web/Controllers/TaskServiceApi.cs CreateTaskAsync,
    # tesTask.CreateId())
    return f"{rng.getrandbits(32):08x}_{rng.getrandbits(128):032x}"


def _plain(status: int, message: str) -> web.Response:
    # BadRequest("...") / NotFound("...") with a bare string: the body is that string
    return web.Response(status=status, text=message)


AZURE = Profile(
    name="TES on Azure",
    source="microsoft/ga4gh-tes src/TesApi.Web/Controllers/TaskServiceApi.cs",
    # every route is declared under /v1 only ([Route("/v1/tasks")], [Route("/v1/service-info")])
    prefixes=("/v1",),
    # GetServiceInfo: a TES 1.0 document (name, doc, storage, supported backend parameters)
    service_info={
        "name": "GA4GH Task Execution Service",
        "doc": "",
        "storage": [],
        "tesResources_supportedBackendParameters": ["vm_size", "workflow_execution_identity"],
    },
    new_id=_azure_id,
    valid_id=lambda task_id: re.fullmatch(r"[0-9a-f]{8}_[0-9a-f]{32}", task_id) is not None,
    not_found=lambda task_id: f"The task with id {task_id} does not exist.",
    error=_plain,
    # ListTasks(namePrefix, pageSize, pageToken, view): no tag filter at all; the
    # version read binds camelCase names (later releases take the TES 1.1 snake_case
    # ones, so the fake accepts both and the 1..2047 limit is exercised)
    honours_tags=False,
    name_prefix_param="namePrefix",
    page_size_params=("pageSize", "page_size"),
    # pageSize < 1 or > 2047 -> 400 "If provided, pageSize must be greater than 0 and less
    # than 2048"; the page token is base64url text
    page_size_range=(1, 2047),
    # a missing view means MINIMAL; the name is parsed case-insensitively (TesJsonResult)
    views={**_VIEWS, "minimal": "MINIMAL", "basic": "BASIC", "full": "FULL"},
    # CancelTask of a COMPLETE/EXECUTOR_ERROR/SYSTEM_ERROR task: logged, answered 200 {}
    cancel_final=_cancel_is_noop,
    # 429 with no Retry-After under load (DatabaseOverloadedExceptionMiddleware.cs)
    throttle_every=7,
    # executor logs name the blob holding them instead of their text (as the TES on
    # Azure deployment documents; the blob lives in the deployment's storage account)
    logs_as_urls=True,
    log_url=lambda task_id, index, stream: (
        f"https://tesstorage.blob.core.windows.net/tes-internal/tasks/{task_id}/exec-{index}.{stream}"
    ),
)


# -- Funnel ------------------------------------------------------------------

_XID = "0123456789abcdefghijklmnopqrstuv"


def _xid(rng: random.Random, n: int) -> str:
    # ids are xids: 12 bytes (time, machine, pid, counter) in 20 base32hex characters,
    # sortable by creation (ohsu-comp-bio/funnel tes/utils.go GenerateID)
    raw = (n << 40 | rng.getrandbits(40)).to_bytes(12, "big")
    number = int.from_bytes(raw, "big")
    return "".join(_XID[(number >> (5 * i)) & 31] for i in reversed(range(20)))


def _protojson(value: Any) -> Any:
    # protojson with EmitUnpopulated false omits every zero value: exit_code 0, false,
    # "", empty lists and maps, and the enums' zero names (state UNKNOWN, type FILE)
    # (ohsu-comp-bio/funnel server/marshal.go NewMarshaler; tes/tes.proto enum State,
    # enum FileType)
    if isinstance(value, dict):
        kept = {k: _protojson(v) for k, v in value.items()}
        return {
            k: v
            for k, v in kept.items()
            if v not in (None, "", 0, False, [], {})
            and not (k == "state" and v == "UNKNOWN")
            and not (k == "type" and v == "FILE")
        }
    if isinstance(value, list):
        return [_protojson(v) for v in value]
    return value


def _funnel_task(doc: dict[str, Any], view: str, system_logs: list[str]) -> dict[str, Any]:
    # The marshaler guesses the view from the task: FULL only when the first attempt
    # has system logs, else the BASIC shape, which drops executors' stdout/stderr
    # paths (server/marshal.go DetectView, TranslateTask)
    if view == "FULL" and not system_logs:
        for executor in doc.get("executors") or []:
            executor.pop("stdout", None)
            executor.pop("stderr", None)
    if view == "MINIMAL":
        doc = {"id": doc["id"], "state": doc["state"]}
    return _protojson(doc)


def _funnel_token(offset: int, page: list[str]) -> str:
    # next_page_token is the last id of a full page, even when no task follows
    # (server/boltdb/task.go ListTasks: `if len(tasks) == pageSize`)
    return page[-1]


def _after(token: str, ids: list[str]) -> int:
    return ids.index(token) + 1 if token in ids else 0


def _funnel_cancel_final(state: str) -> web.Response:
    # Cancel writes a CANCELED state event; from a final state ValidateTransition
    # fails with a plain error, which the gateway maps to 500 (tes/states.go,
    # server/server.go customErrorHandler: non-status errors -> 500 with the fallback)
    message = f"invalid state transition from {state} to CANCELED"
    return web.json_response({"error": message}, status=500)


FUNNEL = Profile(
    name="Funnel",
    source="ohsu-comp-bio/funnel server/, tes/",
    # routes under /, /v1 and /ga4gh/tes/v1 (tes/tes.proto google.api.http bindings)
    prefixes=("", "/v1", "/ga4gh/tes/v1"),
    # service-info: type.version and version are Funnel's own version, not a TES version
    # (server/tes.go GetServiceInfo)
    service_info={
        "id": "org.ga4gh.funnel",
        "name": "Funnel",
        "type": {"artifact": "tes", "group": "org.ga4gh", "version": "0.11.4"},
        "organization": {
            "name": "OHSU Computational Biology",
            "url": "https://github.com/ohsu-comp-bio",
        },
        "createdAt": "2016-03-21T16:27:49-07:00",
        "version": "0.11.4",
        "tesResources_backend_parameters": [""],
        "storage": ["file:///path/to/local/funnel-storage"],
    },
    new_id=_xid,
    valid_id=lambda task_id: True,
    # NotFound -> 404 {"error": "task not found: taskID: <id>"} (server/tes.go GetTask,
    # server/server.go customErrorHandler and JSONError)
    not_found=lambda task_id: f"task not found: taskID: {task_id}",
    error=lambda status, message: web.json_response({"error": message}, status=status),
    # tags are honoured; name_prefix is not read by the BoltDB listing
    # (server/boltdb/task.go ListTasks filters state and tags only)
    honours_tags=True,
    name_prefix_param=None,
    # page size: default 256, above 2048 clamped to 2048 (tes/utils.go GetPageSize)
    page_size_range=(1, 2048),
    clamp_page_size=True,
    # newest task first (server/boltdb/task.go: cursor from Last(), then Prev())
    newest_first=True,
    token_when_full=True,
    encode_token=_funnel_token,
    decode_token=_after,
    cancel_final=_funnel_cancel_final,
    shape_list=_protojson,
    shape_task=_funnel_task,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (TESK, AZURE, FUNNEL)}
