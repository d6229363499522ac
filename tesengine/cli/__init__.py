"""The ``tesengine`` command line."""
