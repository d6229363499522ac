"""Embed tesengine in an asyncio program: fan out 100 tasks, then gather them.

    python examples/fanout.py                  # embedded local server, nothing to set up
    python examples/fanout.py sprocket.toml    # any TES server from a sprocket.toml

Each task counts the words of one line of a shared input file; the input is
uploaded once (same content address for all 100 tasks) and every result is
read lazily, straight from the output store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from tesengine import Executor, Task, TesBackend, embedded_backend, load_config

LINES = 100


async def main(config_path: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Run as root, the sandbox runs as `nobody`, which must search its way to the
        # task directories: mkdtemp makes 0700 directories.
        os.chmod(tmp, 0o711)  # noqa: S103 - search only, no listing
        text = Path(tmp) / "lines.txt"
        text.write_text("".join(f"line {i} has {'word ' * i}\n" for i in range(LINES)))
        async with contextlib.AsyncExitStack() as stack:
            if config_path:
                backend = await stack.enter_async_context(TesBackend(load_config(config_path)))
            else:
                backend = await stack.enter_async_context(embedded_backend(Path(tmp) / "tes"))
            runs = await asyncio.gather(
                *(
                    backend.submit(
                        Task(
                            name=f"line-{i}",
                            executors=[
                                Executor(
                                    image="debian:stable-slim",
                                    command=[
                                        "sh",
                                        "-c",
                                        f"sed -n '{i + 1}p' /in/lines.txt | wc -w > /out/n.txt",
                                    ],
                                )
                            ],
                            inputs={"/in/lines.txt": text},
                            outputs={"n": "/out/n.txt"},
                        )
                    )
                    for i in range(LINES)
                )
            )
            results = await asyncio.gather(*runs)
            counts = await asyncio.gather(*(r.file("n").read_text() for r in results))
    total = sum(int(c) for c in counts)
    print(f"{len(results)} tasks complete; {total} words in all")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
