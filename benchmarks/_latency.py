"""A loopback TCP proxy that adds a fixed round-trip latency, for benchmarks.

There is no netem here (no root, no ``tc``), and a store on loopback answers
in well under a millisecond, which flatters whichever side sends more
requests. :func:`delayed` puts a proxy in front of an endpoint: every chunk
is held for half the round trip in each direction, released in order at its
own deadline (a pipelined stream is delayed once, not once per chunk queued
ahead of it), as a link with that latency and ample bandwidth would.

The proxy runs its own event loop in a daemon thread of the parent process,
which is idle while the timed worker processes run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

CHUNK = 1 << 16


@contextlib.contextmanager
def delayed(endpoint: str, rtt_ms: float) -> Iterator[str]:
    """Yield an ``http://127.0.0.1:<port>`` endpoint ``rtt_ms`` further away than ``endpoint``.

    With ``rtt_ms`` 0 the endpoint itself is yielded and no proxy runs.
    """
    if rtt_ms <= 0:
        yield endpoint
        return
    parts = urlsplit(endpoint)
    target = (parts.hostname or "127.0.0.1", parts.port or 80)
    loop = asyncio.new_event_loop()
    started: asyncio.Future[asyncio.Server] = loop.create_future()
    thread = threading.Thread(
        target=_serve, args=(loop, target, rtt_ms / 2000, started), daemon=True
    )
    thread.start()
    server = asyncio.run_coroutine_threadsafe(_wait(started), loop).result(timeout=10)
    port = server.sockets[0].getsockname()[1]
    try:
        yield urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, "", ""))
    finally:
        asyncio.run_coroutine_threadsafe(_stop(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _wait(started: asyncio.Future[asyncio.Server]) -> asyncio.Server:
    return await started


async def _stop(server: asyncio.Server) -> None:
    """Close the listener and every open connection's tasks, so none is left pending."""
    server.close()
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _serve(
    loop: asyncio.AbstractEventLoop,
    target: tuple[str, int],
    one_way_s: float,
    started: asyncio.Future[asyncio.Server],
) -> None:
    asyncio.set_event_loop(loop)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Swallowed at shutdown: 3.11's start_server callback calls
        # exception() on its task, which raises for a cancelled one.
        with contextlib.suppress(asyncio.CancelledError):
            await _proxy(reader, writer, target, one_way_s)

    async def start() -> None:
        started.set_result(await asyncio.start_server(accept, "127.0.0.1", 0))

    loop.create_task(start())
    loop.run_forever()


async def _proxy(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    target: tuple[str, int],
    one_way_s: float,
) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(
        _pipe(client_r, server_w, one_way_s),
        _pipe(server_r, client_w, one_way_s),
        return_exceptions=True,
    )
    for writer in (client_w, server_w):
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk released ``delay`` after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()  # half-close, as the sender did
                return
            writer.write(data)
            await writer.drain()

    releaser = asyncio.create_task(release())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await releaser
    except (OSError, asyncio.IncompleteReadError):
        releaser.cancel()
