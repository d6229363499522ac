"""nox sessions: tests, lint, typecheck, bench, fuzz, faults, peers."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Install the package with its test extra and run pytest."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "tesengine")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ (or the ones named after --)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Schemathesis over the TES OpenAPI file against `tesengine serve` (no 500s).

    Bounded: FUZZ_EXAMPLES examples per operation (default 150, about 30 s).
    """
    session.install("-e", ".[test]", "schemathesis>=4.0,<5")
    session.run("pytest", "-p", "no:cacheprovider", "tests/fuzz_server.py", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """The whole reliability and security suite at full size: tests/faults, and the
    repeated CLI runs of tests/test_staging_cli.py (30 instead of 5)."""
    session.install("-e", ".[test]")
    paths = ["tests/faults", "tests/test_staging_cli.py"]
    session.run("pytest", *paths, *session.posargs, env={"FAULTS_FULL": "1"})


@nox.session
def peers(session: nox.Session) -> None:
    """Interop with the real peers (Sprocket, built by .ci/peers.sh) at full size.

    The quick subset of tests/peers runs in the default pytest run; this
    session adds the full trees and both shared-bucket directions (PEERS_FULL=1).
    """
    session.install("-e", ".[test]")
    out = session.run("bash", ".ci/peers.sh", silent=True, external=True)
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in str(out).splitlines()
        if line.startswith("export ")
    )
    session.run("pytest", "tests/peers", *session.posargs, env={**env, "PEERS_FULL": "1"})
