"""What a fit sends to a tracking server, kept on disk until the server has it.

A fit that logs to an MLflow *server* writes every metric batch, artifact, tag and its final status first
to a spool file (``<run folder>/mlflow-spool-<run_id>.jsonl``: one JSON record a line after a header that
names the server and the run), then a background thread sends the records in order. Training never waits
for the server: when it stops answering, the thread keeps the records and tries again every
``retry_interval_s`` seconds; when it is back, the records go out and the file is removed. If it is still
away when the fit ends, the file stays, the fit says where, and ``python -m marl_lightning replay <file>``
sends it later (:func:`replay`). A fit resumed into the same run picks up a spool left by a killed one.

Sending a record twice is harmless (MLflow keeps one copy of a metric value with the same key, step,
timestamp and value; an artifact or tag is overwritten; a status set again), so a record whose delivery
was cut off is sent again rather than lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # MLflow is imported when a record is sent: a fit without a logger never loads it
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

SPOOL_PREFIX = "mlflow-spool-"
SPOOL_SUFFIX = ".jsonl"
SENT_SUFFIX = ".sent"  # beside the spool: how many of its records the server has
REJECTED_SUFFIX = ".rejected"  # records the server refused for good (a bad key), kept for inspection
FORMAT = 1


def spool_path(folder: str | os.PathLike, run_id: str) -> Path:
    """Where a run's spool lies in ``folder``."""
    return Path(folder) / f"{SPOOL_PREFIX}{run_id}{SPOOL_SUFFIX}"


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the server is away or overloaded (retry later), not that it refused the
    record (a 4xx other than 429: retrying would never help)."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):  # (MLflow wraps a refused connection as a 500)
        status = error.get_http_status_code()
        return status >= 500 or status == 429
    return isinstance(error, (requests.RequestException, ConnectionError, TimeoutError))


def encode_batch(
    metrics: Iterable[Metric], params: Iterable[Param], tags: Iterable[RunTag]
) -> dict[str, Any]:
    """A ``log_batch`` call as a spool record."""
    return {
        "batch": {
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
            "params": [[p.key, p.value] for p in params],
            "tags": [[t.key, t.value] for t in tags],
        }
    }


def send(client: MlflowClient, run_id: str, record: dict[str, Any]) -> None:
    """Deliver one spooled record (synchronously, with MLflow's own retries)."""
    from mlflow.entities import Metric, Param, RunTag

    if "batch" in record:
        batch = record["batch"]
        metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in batch["metrics"]]
        params = [Param(key, value) for key, value in batch["params"]]
        tags = [RunTag(key, value) for key, value in batch["tags"]]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=True)
    elif "artifact" in record:
        if not os.path.isfile(record["artifact"]):  # (removed since: no retry brings it back)
            raise FileNotFoundError(f"the artifact {record['artifact']} no longer exists")
        client.log_artifact(run_id, record["artifact"], record.get("folder"))
    elif "tag" in record:
        key, value = record["tag"]
        client.set_tag(run_id, key, value, synchronous=True)
    elif "status" in record:
        client.set_terminated(run_id, record["status"], record.get("end_time"))
    else:
        raise ValueError(f"not a spool record: {record}")


class MetricSpool:
    """The spool file of one run and the thread that empties it (see the module's docstring)."""

    def __init__(
        self,
        path: Path,
        client: MlflowClient,
        tracking_uri: str,
        run_id: str,
        retry_interval_s: float = 5.0,
    ) -> None:
        self.path = path
        self.client = client
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.retry_interval_s = retry_interval_s
        self._lock = threading.Lock()  # the file, the queue and the counters
        self._work = threading.Condition(self._lock)
        self._pending: deque[dict[str, Any]] = deque()
        self._sent = 0  # records of the file the server has
        self._closing = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.outage: str | None = None  # why the server does not answer, while it does not
        if path.is_file():  # left by a fit that was killed or ended while the server was away
            header, records, sent = read(path)
            if header["run_id"] != run_id:
                raise ValueError(f"{path} is the spool of run {header['run_id']}, not {run_id}")
            # Written again whole: a last line cut off by a kill would run into the next record.
            _write_atomically(path, "".join(json.dumps(line) + "\n" for line in [header, *records]))
            self._pending.extend(records[sent:])
            self._sent = sent
            if self._pending:
                self._start()

    def put(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the file (flushed before this returns) and queue it for the server."""
        with self._lock:
            if not self.path.is_file():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                header = {"spool": FORMAT, "tracking_uri": self.tracking_uri, "run_id": self.run_id}
                self.path.write_text(json.dumps(header) + "\n")
            with self.path.open("a") as file:
                file.write(json.dumps(record) + "\n")
                file.flush()
            self._pending.append(record)
            self._work.notify()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlflow-spool", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Records not yet delivered (the one being sent included)."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the server to take every record; True if it did (the file is
        then gone), False if the records stay in the file."""
        with self._lock:
            self._closing = True
            self._work.notify()
        self._wake.set()  # an outage's wait ends early: one more try, then give up at the deadline
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.pending() == 0

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._work.wait()
                if not self._pending:
                    return
                record = self._pending[0]
            try:
                send(self.client, self.run_id, record)
            except Exception as error:  # noqa: BLE001 - sorted below: an outage, or a refusal for good
                if is_outage(error):
                    self._report_outage(error)
                    with self._lock:
                        closing = self._closing
                    if closing:
                        return  # the records stay in the file
                    self._wake.wait(self.retry_interval_s)
                    self._wake.clear()
                    continue
                reject(self.path, record, error)
            self._delivered()

    def _delivered(self) -> None:
        with self._lock:
            self._pending.popleft()
            self._sent += 1
            if not self._pending:  # everything is on the server: nothing to keep
                self.path.unlink(missing_ok=True)
                Path(f"{self.path}{SENT_SUFFIX}").unlink(missing_ok=True)
                self._sent = 0
            else:
                _write_sent(self.path, self._sent)
        if self.outage is not None:
            self.outage = None
            print(f"marl_lightning: the tracking server {self.tracking_uri} answers again; the spooled "
                  "records are being sent.", file=sys.stderr)

    def _report_outage(self, error: BaseException) -> None:
        if self.outage is None:
            self.outage = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"marl_lightning: the tracking server {self.tracking_uri} does not answer ({self.outage}); "
                  f"training goes on, and what it logs is kept in {self.path} until the server is back.",
                  file=sys.stderr)


def reject(path: Path, record: dict[str, Any], error: BaseException) -> None:
    """Keep a record that can never be delivered (the server refused it, its file is gone) beside the
    spool, and say so."""
    with open(f"{path}{REJECTED_SUFFIX}", "a") as file:
        file.write(json.dumps({"record": record, "error": str(error)}) + "\n")
    print(f"marl_lightning: a record of {path.name} cannot be delivered ({error}); it is kept in "
          f"{path}{REJECTED_SUFFIX}.", file=sys.stderr)


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` whole: a kill leaves the old file or the new one, never a mix."""
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def _write_sent(path: Path, sent: int) -> None:
    _write_atomically(Path(f"{path}{SENT_SUFFIX}"), str(sent))


def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(header, records, how many of them were delivered) of a spool file. A last line cut off by a kill is
    dropped (its record was never acknowledged to anyone)."""
    lines = path.read_text().splitlines()
    if not lines:
        raise ValueError(f"{path} is empty: not an MLflow spool written by marl_lightning")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = {}
    if not isinstance(header, dict) or header.get("spool") != FORMAT or "run_id" not in header:
        raise ValueError(f"{path} is not an MLflow spool written by marl_lightning (its first line is no "
                         "spool header)")
    records = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise ValueError(f"{path}: line {number} is not a spool record") from None
    sent_file = Path(f"{path}{SENT_SUFFIX}")
    sent = int(sent_file.read_text()) if sent_file.is_file() else 0
    return header, records, min(sent, len(records))


def spool_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """The spool files among ``paths``; a folder stands for every spool under it."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(path.rglob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"))
        else:
            yield path


def replay(path: Path, client: MlflowClient) -> dict[str, int]:
    """Send a spool's undelivered records into its run, in order, then remove the file.

    Returns counts (records, metric values, artifacts, rejected). Raises what the client raises if the
    server stops answering; what was delivered is recorded, so a later replay sends only the rest. A record
    that can never be delivered is kept beside (:func:`reject`).
    """
    header, records, sent = read(path)
    counts = {"records": 0, "metric values": 0, "artifacts": 0, "rejected": 0}
    for index in range(sent, len(records)):
        record = records[index]
        try:
            send(client, header["run_id"], record)
        except Exception as error:
            if is_outage(error):
                raise
            reject(path, record, error)
            counts["rejected"] += 1
        _write_sent(path, index + 1)
        counts["records"] += 1
        counts["metric values"] += len(record.get("batch", {}).get("metrics", []))
        counts["artifacts"] += int("artifact" in record)
    path.unlink()
    with contextlib.suppress(FileNotFoundError):
        Path(f"{path}{SENT_SUFFIX}").unlink()
    return counts
