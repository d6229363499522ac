"""Task output made safe for a terminal: control characters become visible.

A task's logs are written by the task, so they may hold escape sequences that
move the cursor, retitle the window or rewrite what the user sees. Written to
a terminal, every control character except newline and tab is shown as a
``\\xNN`` (or ``\\uNNNN``) escape; written to a file or pipe, text is unchanged.
"""

from __future__ import annotations

import re
from typing import TextIO

__all__ = ["make_visible", "visible"]

# C0 controls except \t and \n, DEL, C1 controls, and the bidirectional overrides
# that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def make_visible(text: str) -> str:
    """``text`` with every control character except newline and tab escaped."""
    return _CONTROL.sub(_escape, text)


def visible(text: str, stream: TextIO) -> str:
    """``text`` as it may be written to ``stream``: escaped when it is a terminal."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return make_visible(text) if tty else text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
