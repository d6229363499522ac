"""``python -m tesengine``: the same as the ``tesengine`` command."""

from tesengine.cli.main import entry

entry()
