"""The one adapter to Lightning's ``MLFlowLogger``: default run names, continuing an interrupted run, and
logging to a tracking server through a spool.

Lightning's logger has no public way to name a run after it is built or to log into an existing run, so
this subclass sets its private ``_experiment_name``, ``_run_name`` and ``_run_id`` (and reads
``_initialized``, ``_mlflow_client``, ``_tracking_uri``, ``_checkpoint_callback``, and the private
``_convert_params``/``_flatten_dict``/``_scan_and_log_checkpoints`` helpers). Lightning's constructor
builds an ``MlflowClient``, which opens (creates, migrates) the store at once, on every rank: the adapter
hands it a deferred one (:func:`deferred_client_class`), which opens the store at its first use, so a rank
other than 0 never touches it. Nothing else in marl_lightning touches these; ``tests/test_adapters.py``
pins the behaviour relied on.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Iterable, Iterator
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import MLFlowLogger as _LightningMLFlowLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from typing_extensions import override

from marl_lightning.core.errors import Interrupted, find_in_chain, paragraph
from marl_lightning.tracking.spool import MetricSpool, encode_batch, spool_path
from marl_lightning.tracking.store import is_server, local_store_path

LIGHTNING_DEFAULT_EXPERIMENT = "lightning_logs"  # Lightning's experiment_name when none is given
PARAM_VALUE_LIMIT = 250  # Lightning's MLFlowLogger truncates parameter values to this many characters
RESUMED_TAG_PREFIX = "resumed/"
ERROR_TAG = "error"  # a FAILED run's error message (with its notes)
ERROR_TAG_LIMIT = 5000  # MLflow's limit on a tag value's length
LIGHTNING_STATUS = {"success": "FINISHED", "failed": "FAILED", "finished": "FINISHED"}  # as its finalize
MLFLOW_RUN_KEY = "mlflow_run_id"  # checkpoint key (callbacks.IterationCheckpoint): the run to continue


_THREAD_LOCKS: dict[str, threading.RLock] = {}  # per store file: this process's holder, and its depth
_DEPTH: dict[str, int] = {}


@contextlib.contextmanager
def store_lock(uri: str | None) -> Iterator[None]:
    """An exclusive lock on a local SQLite store (``<db>.lock`` beside it) across processes and threads;
    nothing for other stores (a tracking server serialises its own writes). Re-entrant: the holder may
    take it again (creating the run opens the store)."""
    path = local_store_path(uri) if uri and uri.startswith("sqlite:") else None
    if path is None:
        yield
        return
    key = str(path.resolve())
    with _THREAD_LOCKS.setdefault(key, threading.RLock()):
        depth = _DEPTH.get(key, 0)
        _DEPTH[key] = depth + 1
        try:
            if depth:
                yield
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{path}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            _DEPTH[key] = depth


@functools.cache
def deferred_client_class() -> type:
    """``DeferredMlflowClient``: an ``MlflowClient`` that opens its store at its first use, not when built.

    MLflow's client resolves (for SQLite: creates and migrates) the store in its constructor. Lightning's
    logger builds one on every rank when the CLI instantiates it, before a rank knows whether it is 0;
    under ``torchrun --nnodes 2`` both "nodes" then created the same SQLite store at once and MLflow's
    migration failed. Deferred, only the rank that logs (0) opens the store, one process at a time
    (:func:`store_lock`). (Built on first call: importing MLflow costs the CLI a second.)
    """
    from mlflow.tracking import MlflowClient

    class DeferredMlflowClient(MlflowClient):
        def __init__(self, tracking_uri: str | None = None) -> None:  # (MLflow's constructor runs later)
            self.__dict__["deferred_tracking_uri"] = tracking_uri

        def __getattr__(self, name: str) -> Any:
            # Called only for attributes not set yet: MLflow's, before its constructor has run.
            if name.startswith("__") or self.opened() or self.__dict__.get("opening"):
                raise AttributeError(name)  # (MLflow's constructor itself asks for unset attributes)
            uri = self.__dict__["deferred_tracking_uri"]
            self.__dict__["opening"] = True
            try:
                with store_lock(uri):
                    MlflowClient.__init__(self, uri)
            finally:
                self.__dict__["opening"] = False
            return getattr(self, name)

        def opened(self) -> bool:
            """Whether the store has been opened (by a first use)."""
            return "_tracking_client" in self.__dict__

        def __reduce__(self) -> tuple:  # a copy (pickled, deep-copied) is a deferred client of the same store
            return deferred_client, (self.__dict__["deferred_tracking_uri"],)

    return DeferredMlflowClient


def deferred_client(tracking_uri: str | None) -> Any:
    """A ``DeferredMlflowClient`` of ``tracking_uri`` (:func:`deferred_client_class`)."""
    return deferred_client_class()(tracking_uri)


@contextlib.contextmanager
def _deferred_clients() -> Iterator[None]:
    """Lightning's constructor builds ``mlflow.tracking.MlflowClient(...)``: a deferred one, meanwhile."""
    import mlflow.tracking

    original = mlflow.tracking.MlflowClient
    mlflow.tracking.MlflowClient = deferred_client_class()
    try:
        yield
    finally:
        mlflow.tracking.MlflowClient = original


class SpoolingClient:
    """The MLflow client of a fit that logs to a tracking server: what it writes into its run during
    training (metric batches, artifacts, tags, the final status) goes through the run's
    :class:`~marl_lightning.tracking.spool.MetricSpool`; everything else goes straight to MLflow."""

    def __init__(self, client: Any, spool: MetricSpool) -> None:
        self._client = client
        self.spool = spool

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (not set yet: copying or unpickling must not recurse through here)
            raise AttributeError(name)
        return getattr(self._client, name)

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Iterable[Any] = (),
        tags: Iterable[Any] = (),
        synchronous: bool | None = None,
    ) -> None:
        if run_id != self.spool.run_id:
            self._client.log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)
            return
        self.spool.put(encode_batch(metrics, params, tags))

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        if run_id != self.spool.run_id:
            self._client.log_artifact(run_id, local_path, artifact_path)
            return
        self.spool.put({"artifact": os.path.abspath(local_path), "folder": artifact_path})

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        if run_id != self.spool.run_id:
            self._client.set_tag(run_id, key, value, synchronous=synchronous)
            return
        self.spool.put({"tag": [key, str(value)]})

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        if run_id != self.spool.run_id:
            self._client.set_terminated(run_id, status, end_time)
            return
        self.spool.put({"status": status or "FINISHED", "end_time": end_time or int(time.time() * 1000)})


class MLFlowLogger(_LightningMLFlowLogger):
    """Lightning's ``MLFlowLogger`` (same arguments) that can go on logging into an existing run.

    ``fit --ckpt_path ...`` calls :meth:`continue_run` with the run recorded in the checkpoint, so an
    interrupted and resumed fit is one MLflow run whose metrics continue at the restored step. MLflow
    parameters are immutable: on a continued run, parameters already recorded with the same value are not
    sent again, new ones are added, and a changed one (say a larger ``model.total_frames``) keeps its first
    value and gets its new value as the tag ``resumed/<name>``.

    A fit stopped by a signal (``errors.Interrupted``) or Ctrl-C (KeyboardInterrupt) ends its run KILLED,
    not FAILED; a fit that failed ends FAILED with the error's message as the tag ``error``.
    ``log_system_metrics`` (off by default) records CPU, memory, disk, network and, where
    ``nvidia-ml-py`` is installed, GPU use through MLflow's own system-metrics monitor (``system/...``
    metrics, one sample every ``system_metrics_interval_s`` seconds).

    Logging to a tracking server (an ``http(s)://`` URI), what the fit writes into its run goes first to a
    spool file in ``spool_dir`` (the CLI uses the run's checkpoint folder) and from there to the server, by
    a background thread (``marl_lightning.tracking.spool``): training never waits for the server, and a
    server that stops answering loses nothing. The thread tries again every ``retry_interval_s`` seconds;
    the end of the fit waits up to ``spool_wait_s`` seconds for it, then leaves what the server has not
    taken in the spool file, says where, and ``python -m marl_lightning replay <file>`` sends it later.
    Credentials come only from MLflow's environment (``MLFLOW_TRACKING_USERNAME``/``..._PASSWORD``).
    """

    def __init__(
        self,
        *args: Any,
        log_system_metrics: bool = False,
        system_metrics_interval_s: float = 10.0,
        spool_dir: str | None = None,
        retry_interval_s: float = 5.0,
        spool_wait_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        # MLflow's client opens (creates, migrates) the store at its first use, on rank 0 only.
        with _deferred_clients():
            super().__init__(*args, **kwargs)
        self.continued = False
        self.log_system_metrics = log_system_metrics
        self.system_metrics_interval_s = system_metrics_interval_s
        self.spool_dir = spool_dir
        self.retry_interval_s = retry_interval_s
        self.spool_wait_s = spool_wait_s
        self._system_monitor = None
        self._spooling_client: SpoolingClient | None = None

    @property
    @override
    def experiment(self) -> Any:
        if self._spooling_client is not None:
            return self._spooling_client
        if rank_zero_only.rank != 0:  # Lightning's stand-in, which touches no store
            return super().experiment
        if self._initialized:
            client = super().experiment
        else:
            # Creating the experiment and the run: several fits starting at once into one SQLite store
            # (four seeds by hand, a grid's jobs) would each create the same experiment; one at a time, the
            # later ones find it.
            with store_lock(self._tracking_uri):
                client = super().experiment
        if is_server(self._tracking_uri) and rank_zero_only.rank == 0 and self._run_id is not None:
            path = spool_path(self.spool_dir or ".", self._run_id)
            spool = MetricSpool(path, client, self._tracking_uri, self._run_id, self.retry_interval_s)
            self._spooling_client = SpoolingClient(client, spool)
            return self._spooling_client
        return client

    def spool(self) -> MetricSpool | None:
        """The run's spool, when this fit logs to a tracking server."""
        return self._spooling_client.spool if self._spooling_client is not None else None

    def names(self) -> tuple[str, str | None]:
        """(experiment name, run name) as they stand (after :meth:`name_unnamed`)."""
        return self._experiment_name, self._run_name

    def add_tags(self, tags: dict[str, str]) -> None:
        """Tag the run with ``tags``, keeping any tag already given (a grid's ``algorithm`` label, say)."""
        self.tags = {**tags, **(self.tags or {})}
        if self._run_id is not None:  # a continued run; a new one is created with self.tags
            self._tag_existing_run()

    @rank_zero_only
    def _tag_existing_run(self) -> None:
        for key, value in self.tags.items():
            self.experiment.set_tag(self.run_id, key, str(value))

    def name_unnamed(self, experiment_name: str, run_name: str) -> None:
        """Use these names where none was configured; only before the run exists (MLflow creates it lazily,
        at the first log), and never for a continued run."""
        if self._run_id is not None:
            return
        if self._experiment_name == LIGHTNING_DEFAULT_EXPERIMENT:
            self._experiment_name = experiment_name
        if self._run_name is None:
            self._run_name = run_name

    def continue_run(self, run_id: str) -> bool:
        """Log into ``run_id`` instead of creating a run, if this tracking store has it; returns whether so.

        Must be called before anything is logged (the CLI does it before the fit starts).
        """
        from mlflow.exceptions import MlflowException

        if rank_zero_only.rank != 0:  # (only rank 0 logs, and only it opens the store)
            self._run_id = run_id
            self.continued = True
            return True
        try:
            self._mlflow_client.get_run(run_id)
        except MlflowException:
            rank_zero_warn(
                f"The checkpoint's MLflow run {run_id} is not in the store {self._tracking_uri}; "
                "the resumed fit logs to a new run."
            )
            return False
        self._run_id = run_id
        self.continued = True
        self._mark_running(run_id)
        if self.tags:
            self._tag_existing_run()
        return True

    @rank_zero_only
    def _mark_running(self, run_id: str) -> None:
        self._mlflow_client.update_run(run_id, status="RUNNING")

    @override
    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._system_monitor is not None:
            self._system_monitor.finish()
            self._system_monitor = None
        # Lightning finalizes with "failed" from inside its `except` blocks. A stop signal (Interrupted) or
        # Ctrl-C (KeyboardInterrupt, possibly wrapped by the code it interrupted: a collector thread, the
        # database driver) ends the run KILLED; any other error FAILED, with its message as a tag.
        error = sys.exc_info()[1]
        if status == "failed" and find_in_chain(error, (KeyboardInterrupt, Interrupted)) is not None:
            status = "KILLED"
        elif status == "failed" and error is not None and self._run_id is not None:
            self.experiment.set_tag(self._run_id, ERROR_TAG, paragraph(error)[:ERROR_TAG_LIMIT])
        spool = self.spool()
        if spool is None:
            super().finalize(status)
            return
        # Lightning's finalize asks the server for the run first; through the spool, nothing waits for it.
        if self._checkpoint_callback:
            self._scan_and_log_checkpoints(self._checkpoint_callback)
        self.experiment.set_terminated(self._run_id, LIGHTNING_STATUS.get(status, status))
        if not spool.close(self.spool_wait_s):
            print(
                f"marl_lightning: the tracking server {self._tracking_uri} did not take {spool.pending()} "
                f"record(s) of run {self._run_id} (metrics, artifacts, its final status) within "
                f"{self.spool_wait_s:g} s ({spool.outage or 'still sending'}). They are kept in "
                f"{spool.path}; "
                f"once the server is back, send them with `python -m marl_lightning replay {spool.path}`.",
                file=sys.stderr,
            )
        self._spooling_client = None  # a later use of this logger (validate after fit) starts a new spool

    @override
    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        if self.log_system_metrics and self._system_monitor is None:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._system_monitor = SystemMetricsMonitor(
                self.run_id,
                sampling_interval=self.system_metrics_interval_s,
                resume_logging=self.continued,
                tracking_uri=self._tracking_uri,
            )
            self._system_monitor.start()
        if not self.continued:
            super().log_hyperparams(params)
            return
        recorded = self.experiment.get_run(self.run_id).data.params
        flat = _flatten_dict(_convert_params(params))
        new = {key: value for key, value in flat.items() if key not in recorded}
        changed = {
            key: str(value)[:PARAM_VALUE_LIMIT]
            for key, value in flat.items()
            if key in recorded and recorded[key] != str(value)[:PARAM_VALUE_LIMIT]
        }
        if new:
            super().log_hyperparams(new)
        for key, value in changed.items():
            self.experiment.set_tag(self.run_id, RESUMED_TAG_PREFIX + key, value)

