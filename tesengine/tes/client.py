"""An asyncio client for any GA4GH TES v1.1 server.

>>> hello = TesTask(executors=[Executor(image="alpine", command=["echo", "hi"])])
>>> async with TesClient("https://tes.example.org") as tes:  # doctest: +SKIP
...     task = await tes.get_task(await tes.create_task(hello), View.FULL)

Base path: a URL ending in ``/ga4gh/tes/v1`` or ``/v1`` is used as is;
otherwise the first request discovers it from service-info (``/ga4gh/tes/v1``
first, then ``/v1``) and the client remembers it. Only a clear "not here"
(404, 405, or a 200 that is not JSON, like a web UI's page) moves on to the
next prefix; a network error or timeout is retried and then raised, never
taken as "not here".

Submissions are idempotent: each task carries the tag ``tesengine-submission``
with a uuid4; after a POST that failed in a way that may have reached the
server, the client looks the tag up and adopts the task it finds before it
posts again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar, Unpack
from urllib.parse import quote, urlencode, urlsplit

from pydantic import ValidationError

from .._closing import AsyncClosing
from ..auth import AuthProvider, auth_from_config, plain_http_refusal
from ..errors import ConfigError, TesApiError, redact_url
from .channel import Channel, Reply, may_have_reached_server
from .models import (
    API_PREFIXES,
    SUBMISSION_TAG,
    CreateTaskResponse,
    ListTasksResponse,
    ServiceInfo,
    State,
    TesTask,
    View,
    WireModel,
)
from .query import StatePage, TaskQuery, TaskQueryFields
from .retry import MalformedReply, RetryableStatus, RetryPolicy
from .transport import DEFAULT_DEADLINE, DEFAULT_MAX_RESPONSE, RequestCounts, Transport

if TYPE_CHECKING:
    import aiohttp

    from ..config import Config

__all__ = ["StatePage", "TesClient", "known_base"]

log = logging.getLogger("tesengine.tes")

_M = TypeVar("_M", bound=WireModel)
_NOT_HERE = frozenset({404, 405})


def known_base(url: str) -> str | None:
    """``url`` without a trailing slash if it already names the API base, else None."""
    url = url.rstrip("/")
    return url if urlsplit(url).path.endswith(API_PREFIXES) else None


class TesClient(AsyncClosing):
    """Talks to one TES server. Use ``async with`` or call :meth:`aclose`.

    ``max_concurrency`` bounds requests in flight (and the connection pool);
    ``retries`` is how many times a transient failure is retried after the
    first try. ``request_deadline`` bounds each exchange as a whole (connect,
    send, headers and body; retried as a timeout when it runs out), and a
    reply larger than ``max_response_bytes`` is refused with
    :class:`~tesengine.errors.ResponseTooLarge`. ``session`` lets the caller
    share an ``aiohttp.ClientSession`` (it is then not closed here).
    Credentials over plain http to a host that is not loopback are refused
    unless ``insecure`` is true.

    ``transport`` replaces aiohttp altogether (``connect_timeout``,
    ``read_timeout``, ``max_response_bytes`` and ``session`` are then the
    transport's business): :class:`tesengine.testing.MockTransport` answers
    from a function, for tests. Like an injected session, an injected
    transport is left open by :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: AuthProvider | None = None,
        max_concurrency: int = 256,
        retries: int = 8,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        request_deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
        session: aiohttp.ClientSession | None = None,
        insecure: bool = False,
        retry_policy: RetryPolicy | None = None,
        transport: Transport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"TES url must be an http:// or https:// URL, got {redact_url(url)}")
        refusal = plain_http_refusal(url, insecure=insecure, allow="insecure=True")
        if auth is not None and refusal is not None:
            raise ConfigError(refusal)
        self.url = url.rstrip("/")
        self._base = known_base(self.url)
        self._discovery = asyncio.Lock()
        self._owns_transport = transport is None
        if transport is None:
            from .aiohttp_transport import AiohttpTransport  # aiohttp only when it is used

            transport = AiohttpTransport(
                max_concurrency=max_concurrency,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_response_bytes=max_response_bytes,
                session=session,
            )
        elif session is not None:
            raise ConfigError("TesClient takes a session or a transport, not both")
        self._channel = Channel(
            self.url,
            transport,
            auth=auth,
            max_concurrency=max_concurrency,
            policy=retry_policy or RetryPolicy(retries=retries),
            request_deadline=request_deadline,
        )

    @classmethod
    def from_config(cls, config: Config) -> TesClient:
        """A client for the backend of a loaded configuration."""
        b = config.backend
        return cls(
            b.url,
            auth=auth_from_config(b.auth),
            max_concurrency=b.max_concurrency,
            retries=b.retries,
            connect_timeout=b.connect_timeout,
            read_timeout=b.read_timeout,
            request_deadline=b.request_deadline,
            max_response_bytes=b.max_response_bytes,
            insecure=b.insecure,
        )

    def __repr__(self) -> str:
        return f"TesClient({redact_url(self.url)!r})"

    @property
    def counts(self) -> RequestCounts:
        """HTTP requests sent and retries made so far (for run reports)."""
        return self._channel.counts

    async def aclose(self) -> None:
        """Close the connection pool (unless the session or transport was passed in)."""
        if self._owns_transport:
            await self._channel.transport.aclose()

    async def base_url(self) -> str:
        """The API base (``.../ga4gh/tes/v1`` or ``.../v1``), discovered on first use."""
        if self._base is None:
            async with self._discovery:
                if self._base is None:
                    self._base = await self._discover()
        return self._base

    async def service_info(self) -> ServiceInfo:
        """GET /service-info."""
        url = f"{await self.base_url()}/service-info"
        return await self._get(ServiceInfo, url)

    async def create_task(self, task: TesTask) -> str:
        """POST /tasks without ever creating the task twice; returns its id.

        The task is tagged ``tesengine-submission: <uuid4>`` unless it already
        carries that tag (a caller may choose the value, for example to make
        a resubmission distinct from the first submission).
        """
        tags = dict(task.tags or {})
        tag = tags.setdefault(SUBMISSION_TAG, str(uuid.uuid4()))
        body = task.model_copy(update={"tags": tags}).request_json()
        base = await self.base_url()
        url = f"{base}/tasks"
        maybe_sent = False

        async def attempt() -> str:
            nonlocal maybe_sent
            if maybe_sent and (found := await self._find_submission(base, tag, task.name)):
                log.info("adopted task %s created by an earlier, failed POST", found)
                return found
            try:
                reply = await self._channel.send_once("POST", url, body)
                return _parse(CreateTaskResponse, reply).id
            except Exception as exc:
                maybe_sent = maybe_sent or may_have_reached_server(exc)
                raise

        return await self._channel.call("POST", url, attempt)

    async def get_task(self, task_id: str, view: View = View.MINIMAL) -> TesTask:
        """GET /tasks/{id}."""
        url = f"{await self.base_url()}/tasks/{quote(task_id, safe='')}?view={View(view).value}"
        return await self._get(TesTask, url)

    async def list_tasks(
        self, query: TaskQuery | None = None, **fields: Unpack[TaskQueryFields]
    ) -> ListTasksResponse:
        """GET /tasks: one page of ``query`` (``fields`` change it, see :meth:`TaskQuery.of`)."""
        url = _list_url(await self.base_url(), TaskQuery.of(query, **fields))
        return await self._get(ListTasksResponse, url)

    async def list_states(
        self, query: TaskQuery | None = None, **fields: Unpack[TaskQueryFields]
    ) -> StatePage:
        """One MINIMAL page as bare (id, state) pairs: the lean read behind batch polling.

        Building full :class:`TesTask` models is most of the client's cost when a
        page holds thousands of tasks; this reads only what a poller needs.
        """
        wanted = TaskQuery.of(TaskQuery.of(query, **fields), view=View.MINIMAL)
        url = _list_url(await self.base_url(), wanted)

        async def attempt() -> StatePage:
            return _parse_states(await self._channel.send_once("GET", url))

        return await self._channel.call("GET", url, attempt)

    async def iter_tasks(
        self, query: TaskQuery | None = None, **fields: Unpack[TaskQueryFields]
    ) -> AsyncIterator[TesTask]:
        """Every task that matches, page after page."""
        page_query = TaskQuery.of(query, **fields)
        seen: set[str] = set()
        while True:
            page = await self.list_tasks(page_query)
            for task in page.tasks:
                yield task
            token = page.next_page_token
            if not token or token in seen:
                return  # a server that repeats a token would otherwise loop forever
            seen.add(token)
            page_query = page_query.page(token)

    async def cancel_task(self, task_id: str) -> None:
        """POST /tasks/{id}:cancel.

        A task that ended meanwhile needs no cancelling: Funnel refuses the
        move from a final state with a plain HTTP 500, so after a 500 the
        task is read once, and a final state ends the cancel there instead
        of retrying a request that can never succeed.
        """
        url = f"{await self.base_url()}/tasks/{quote(task_id, safe='')}:cancel"

        async def attempt() -> None:
            try:
                await self._channel.send_once("POST", url, b"{}")
            except RetryableStatus as exc:
                if exc.status != 500 or not (await self.get_task(task_id)).current_state.is_final:
                    raise
                log.debug("cancel of %s refused with HTTP 500: it has already ended", task_id)

        await self._channel.call("POST", url, attempt)

    async def _get(self, model: type[_M], url: str) -> _M:
        """GET and parse, retrying a reply whose body was cut short like any transient fault."""

        async def attempt() -> _M:
            return _parse(model, await self._channel.send_once("GET", url))

        return await self._channel.call("GET", url, attempt)

    async def _find_submission(self, base: str, tag: str, name: str | None) -> str | None:
        """The id of the task tagged ``tag``, if the server has one.

        Some servers ignore the tag filter, so the tag is checked on every
        task returned, through all pages. Single tries: the caller's retry
        loop repeats the look-up if it fails.
        """
        query = TaskQuery.of(name_prefix=name, tags={SUBMISSION_TAG: tag}, view=View.BASIC)
        seen: set[str] = set()
        while True:
            url = _list_url(base, query)
            page = _parse(ListTasksResponse, await self._channel.send_once("GET", url))
            for task in page.tasks:
                if task.id and (task.tags or {}).get(SUBMISSION_TAG) == tag:
                    return task.id if await self._really_has(base, task.id) else None
            token = page.next_page_token
            if not token or token in seen:
                return None
            seen.add(token)
            query = query.page(token)

    async def _really_has(self, base: str, task_id: str) -> bool:
        """True when GET of ``task_id`` succeeds: a listing alone is not proof.

        A server may list a task it then fails to keep (an uncommitted
        creation); adopting that id would wait forever on a task that never
        runs. A 404 means post again; other failures are retried by the caller.
        """
        url = f"{base}/tasks/{quote(task_id, safe='')}?view=MINIMAL"
        try:
            _parse(TesTask, await self._channel.send_once("GET", url))
        except TesApiError as exc:
            if exc.status == 404:
                log.info("task %s is listed but not found: not adopted", task_id)
                return False
            raise
        return True

    async def _discover(self) -> str:
        for prefix in API_PREFIXES:
            base = self.url + prefix
            try:
                reply = await self._channel.request("GET", f"{base}/service-info")
                ServiceInfo.model_validate_json(reply.body)
            except TesApiError as exc:
                if exc.status in _NOT_HERE:
                    continue
                raise
            except ValidationError:
                continue  # a 200 that is not service-info: e.g. a web UI's catch-all page
            log.debug("TES API found at %s", redact_url(base))
            return base
        raise TesApiError(
            "GET",
            f"{self.url}{API_PREFIXES[0]}/service-info",
            404,
            f"no TES API under {redact_url(self.url)} (tried {' and '.join(API_PREFIXES)});"
            " give the full API base URL instead",
        )


def _list_url(base: str, query: TaskQuery) -> str:
    return f"{base}/tasks?{urlencode(query.params())}"


def _parse(model: type[_M], reply: Reply) -> _M:
    try:
        return model.model_validate_json(reply.body)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in problem["loc"]) or "document"
        message = (
            f"malformed {model.__name__} from server ({where}: {problem['msg']}):"
            f" {reply.body[:200].decode('utf-8', errors='replace')}"
        )
        if problem["type"] == "json_invalid" and _says_json(reply.content_type):
            # JSON announced but cut short: a transit fault; a POST may have
            # been acted on, so create_task looks its tag up before posting again
            raise MalformedReply(message) from None
        raise TesApiError(reply.method, reply.url, reply.status, message) from None


def _parse_states(reply: Reply) -> StatePage:
    try:
        document = json.loads(reply.body)
        tasks = document.get("tasks") or []
        states = tuple((str(t["id"]), State.parse(t.get("state"))) for t in tasks if t)
        token = document.get("next_page_token") or None
    except (ValueError, AttributeError, KeyError, TypeError, RecursionError):
        # Malformed: let the full model say precisely what is wrong (or that it was cut).
        _parse(ListTasksResponse, reply)
        raise TesApiError(reply.method, reply.url, reply.status, "malformed task list") from None
    return StatePage(states, str(token) if token is not None else None)


def _says_json(content_type: str | None) -> bool:
    """True unless the reply says it is something else (an HTML page, plain text)."""
    return content_type is None or "json" in content_type.lower()
