"""A miniwdl container backend that runs WDL tasks on any TES server through tesengine.

Installed with ``pip install 'tesengine[miniwdl]'``, which registers the entry
point ``miniwdl.plugin.container_backend = tesengine``; select it with
``[scheduler] container_backend = tesengine`` (or
``MINIWDL__SCHEDULER__CONTAINER_BACKEND=tesengine``). Settings live in the
``[tesengine]`` section of miniwdl's cfg (see :mod:`.settings`).
"""

from __future__ import annotations

from .container import TesTaskContainer

__all__ = ["TesTaskContainer"]
