"""``tesengine config check|show [PATH]``: validate and print the configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import load_config


def register(sub: Any) -> None:
    """Add the ``config`` sub-command."""
    parser = sub.add_parser("config", help="check or show the configuration")
    actions = parser.add_subparsers(dest="action", required=True)
    for action, text in (("check", "validate the configuration"), ("show", "print it, redacted")):
        p = actions.add_parser(action, help=text)
        p.add_argument("path", nargs="?", help="config file (default: see README)")
        p.add_argument("--backend", default="default", help="backend name (default: default)")
        p.set_defaults(func=check if action == "check" else show)


def check(args: argparse.Namespace) -> int:
    """Validate; print one line naming the file and backend."""
    config = load_config(args.path, backend=args.backend)
    print(f"ok: {config.source or '<environment>'}: backend {config.backend_name!r} is valid")
    return 0


def show(args: argparse.Namespace) -> int:
    """Print the resolved configuration with every secret as ``<redacted>``."""
    config = load_config(args.path, backend=args.backend)
    print(json.dumps(config.redacted(), indent=2, default=str))
    return 0
