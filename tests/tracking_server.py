"""A real ``mlflow server`` on localhost for the tests: started, stopped and started again on the same port
and backend store (a server that goes away and comes back), paused (SIGSTOP: a hung server, whose requests
time out) and resumed, optionally with basic authentication."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TrackingServer:
    """``mlflow server`` with a SQLite backend and proxied artifacts (``mlflow-artifacts:/``) in
    ``folder``."""

    def __init__(self, folder: Path, app_name: str | None = None, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_name = app_name
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "server-artifacts"), "--workers", "1",
        ]
        if self.app_name:
            command += ["--app-name", self.app_name]
        self.process = subprocess.Popen(
            # MLflow 3's server also starts job runners (huey consumers, five processes) for its GenAI jobs;
            # a tracking server needs none of them.
            command, cwd=self.folder,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its workers with it: signals go to the whole process group
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2)
                return
            except urllib.error.HTTPError:  # it answers (an auth app may refuse anonymous requests)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    pytest.fail("the MLflow tracking server did not start")
                time.sleep(0.25)

    def _signal(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def pause(self) -> None:
        """Freeze the server and its workers: connections are accepted but never answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGCONT)  # (a paused server could not act on SIGTERM)
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None
