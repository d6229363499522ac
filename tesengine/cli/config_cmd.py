"""``tesengine config check|show [PATH]``: validate and print the configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .main import CONFIG_HELP


def register(sub: Any) -> None:
    """Add the ``config`` sub-command; alone, it prints its help."""
    parser = sub.add_parser(
        "config",
        help="check or show the configuration",
        description="Validate (check) or print (show) the TES backend configuration.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    for action, text in (
        ("check", "validate the configuration"),
        ("show", "print it, secrets redacted, with where each value came from"),
    ):
        p = actions.add_parser(action, help=text, description=text)
        p.add_argument("path", nargs="?", help=CONFIG_HELP)
        p.add_argument("--backend", default="default", help="backend name (default: default)")
        p.set_defaults(func=check if action == "check" else show)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=usage)


def check(args: argparse.Namespace) -> int:
    """Validate; print one line naming the file and backend."""
    from ..config import load_config

    config = load_config(args.path, backend=args.backend)
    print(f"ok: {config.source or '<environment>'}: backend {config.backend_name!r} is valid")
    return 0


def show(args: argparse.Namespace) -> int:
    """Print the resolved configuration with every secret as ``<redacted>``.

    ``origins`` says where each backend key came from: the file, an
    environment variable (``env TESENGINE_INTERVAL``) or the default.
    """
    from ..config import load_config

    config = load_config(args.path, backend=args.backend)
    print(json.dumps(config.redacted(), indent=2, default=str))
    return 0
