"""Development sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s speed``, ``nox -s curve``."""

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
def curve(session: nox.Session) -> None:
    session.install(*INSTALL)
    session.run("python", "benchmarks/learning_curve.py", *session.posargs)
