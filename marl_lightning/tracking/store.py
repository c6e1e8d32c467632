"""Open an MLflow tracking store (``compare``, ``grid``), failing fast with one paragraph when it cannot be
reached."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from marl_lightning.core.errors import ConfigError

if TYPE_CHECKING:  # MLflow is imported where a store is opened: a fit without a logger never loads it (1.4 s)
    from mlflow.tracking import MlflowClient

# A probe of an http(s) store gives up after this many seconds and never retries (MLflow's defaults retry
# for minutes before an unreachable server is reported). A refused connection is reported at once; the
# timeout is for a server that accepts and does not answer, and leaves room for a busy one (a basic-auth
# server hashes the password on every request: seconds on a loaded machine).
PROBE_TIMEOUT_S = "20"
PROBE_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": PROBE_TIMEOUT_S}
# A tracking server's account: read by MLflow's client from the environment, and only from there.
USERNAME_VARIABLE, PASSWORD_VARIABLE = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_server(uri: str | None) -> bool:
    """Whether ``uri`` names a tracking server (``http(s)://``), not a local store."""
    return uri is not None and urlparse(uri).scheme in ("http", "https")


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local store URI names (``sqlite:///x.db``, ``file:///x``, ``./mlruns``)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (a Windows drive letter too)
        return Path(uri)
    return None


def _no_answer(client: MlflowClient, uri: str) -> str | None:
    """Why the store does not answer one query (an http(s) store is asked once, without retries), or None.
    A server that refuses the credentials is a ConfigError of its own (:func:`credentials_refused`)."""
    from mlflow.exceptions import MlflowException

    probe = PROBE_ENVIRONMENT if is_server(uri) else {}
    try:
        with _environment(probe):
            client.search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure to answer is reported the same way
        if isinstance(error, MlflowException) and error.get_http_status_code() in (401, 403):
            raise credentials_refused(uri, error.get_http_status_code()) from None
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    return None


def credentials_refused(uri: str, status: int) -> ConfigError:
    """The error for a server that answers 401/403: it names the account tried, never the password."""
    user = os.environ.get(USERNAME_VARIABLE)
    tried = (f"it refused the account {user!r} from {USERNAME_VARIABLE} with the password from "
             f"{PASSWORD_VARIABLE}" if user else f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE} are not set")
    return ConfigError(
        f"The MLflow tracking server at {uri} asks for credentials (HTTP {status}): {tried}. Set "
        f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE} to an account of that server (marl_lightning reads "
        "them from the environment only, and writes them nowhere)."
    )


def check_no_credentials_in(uri: str, field: str) -> None:
    """A URI with a user or password in it (``http://user:pass@host``) would land in the run's parameters,
    its ``config.yaml`` and the checkpoints: refused, pointing to MLflow's environment variables."""
    parsed = urlparse(uri)
    if is_server(uri) and (parsed.username or parsed.password):
        bare = f"{parsed.scheme}://{parsed.hostname}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"
        raise ConfigError(
            f"{field}: the URI carries credentials, which would be written into the run's parameters, its "
            f"config.yaml and the checkpoints. Use {bare} and put the user and password in "
            f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE}."
        )


def open_store(uri: str, must_exist: bool = True) -> MlflowClient:
    """A client of the tracking store ``uri``, checked to answer (and to exist, with ``must_exist``).

    With ``must_exist`` a local store that does not exist is an error (MLflow would create a new, empty
    one); an http(s) store is probed once without retries, so an unreachable server is reported in seconds.
    """
    from mlflow.tracking import MlflowClient

    fix = "Pass the store the runs were logged to with --tracking-uri (or set MLFLOW_TRACKING_URI)."
    check_no_credentials_in(uri, "--tracking-uri")
    path = local_store_path(uri)
    if must_exist and path is not None and not path.exists():
        raise ConfigError(
            f"--tracking-uri {uri}: {path} does not exist, so it holds no runs (MLflow would create a new, "
            f"empty store there). {fix} The default is ./mlflow.db in the folder where `fit` ran "
            f"(sqlite:///mlflow.db)."
        )
    client = MlflowClient(tracking_uri=uri)
    reason = _no_answer(client, uri)
    if reason is not None:
        raise ConfigError(
            f"--tracking-uri {uri}: the MLflow tracking store does not answer ({reason}). Check that the "
            f"server is running and reachable from here (`mlflow server` prints its address), or that the "
            f"file is an MLflow store. {fix}"
        ) from None
    return client


def check_store_for_logging(uri: str, field: str = "trainer.logger.init_args.tracking_uri") -> None:
    """Before a fit logs to ``uri``: a server must answer (probed once, no retries); a local store's folder
    must take files (or the nearest folder above it that exists, where MLflow would create it); a server's
    credentials come from the environment, not the URI. Creates nothing; a ConfigError names the URI and
    the fix."""
    check_no_credentials_in(uri, field)
    path = local_store_path(uri)
    if path is not None:
        folder = path if path.suffix == "" and not uri.startswith("sqlite:") else path.parent
        folder = folder if str(folder) else Path(".")
        while not folder.is_dir() and folder != folder.parent:  # MLflow creates missing folders
            folder = folder.parent
        try:  # a real write (os.access is true for root on any folder)
            with tempfile.TemporaryFile(dir=folder):
                pass
            if path.is_file():
                with path.open("ab"):
                    pass
        except OSError as error:
            raise ConfigError(
                f"{field}: {uri}: the store cannot be written ({error.strerror or error}: "
                f"{error.filename or folder}). Log to a folder you can write (e.g. "
                "--trainer.logger.init_args.tracking_uri sqlite:///mlflow.db), or use a tracking server."
            ) from None
        return
    if not is_server(uri):
        return
    from mlflow.tracking import MlflowClient

    reason = _no_answer(MlflowClient(tracking_uri=uri), uri)
    if reason is not None:
        raise ConfigError(
            f"{field}: the MLflow tracking server at {uri} does not answer ({reason}). Start it "
            "(`mlflow server --port ...`), check the address, or log to a local store "
            "(--trainer.logger.init_args.tracking_uri sqlite:///mlflow.db)."
        ) from None


def ui_hint(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """Where to look in MLflow's UI: the experiment's training runs as charts (MLflow 3 otherwise opens on
    its GenAI overview), or one run's artifacts."""
    if is_server(uri):
        base, start = uri.rstrip("/"), ""
    else:
        base, start = "http://127.0.0.1:5000", f"`mlflow ui --backend-store-uri {uri}`, then "
    page = f"runs/{run_id}/artifacts" if run_id else "runs?compareRunsMode=CHART"
    return f"{start}{base}/#/experiments/{experiment_id}/{page}"
