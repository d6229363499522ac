"""``tesengine serve``: a small, faithful TES v1.1 server for one machine.

Use :class:`LocalTesServer` to run one inside an event loop, or
:func:`create_app` to mount the API in an aiohttp application.
"""

from __future__ import annotations

from .app import ServerSettings, create_app
from .in_process import LocalTesServer

__all__ = ["LocalTesServer", "ServerSettings", "create_app"]
