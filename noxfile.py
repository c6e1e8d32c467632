"""Development sessions: ``nox -s tests``, ``lint``, ``speed``, ``bench`` (throughput.py), ``curve``."""

import nox

nox.options.default_venv_backend = "venv"
INSTALL = ["torch==2.13.0", "-e", ".[dev]"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install(*INSTALL)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def speed(session: nox.Session) -> None:
    session.install(*INSTALL)
    session.run("python", "benchmarks/speed_mappo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """``benchmarks/throughput.py``: e.g. ``nox -s bench -- --runs 3 --compare-benchmarl``."""
    session.install(*INSTALL)
    session.run("python", "benchmarks/throughput.py", *session.posargs)


@nox.session
def curve(session: nox.Session) -> None:
    session.install(*INSTALL)
    session.run("python", "benchmarks/learning_curve.py", *session.posargs)
