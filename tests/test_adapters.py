"""Pins what marl_lightning relies on in a dependency's private API, so a release that changes it fails here.

The only such adapter is ``marl_lightning.tracking.loggers.MLFlowLogger`` (Lightning's ``MLFlowLogger``: its
``_experiment_name``, ``_run_name``, ``_run_id``, ``_initialized``, ``_mlflow_client``, ``_tracking_uri``,
``_checkpoint_callback``/``_scan_and_log_checkpoints`` and the fabric helpers
``_convert_params``/``_flatten_dict``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from mlflow.tracking import MlflowClient

from marl_lightning.tracking.loggers import LIGHTNING_DEFAULT_EXPERIMENT, MLFlowLogger
from tests.conftest import REPO


def test_lightning_logger_fields_the_adapter_sets_decide_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    plain = LightningMLFlowLogger(tracking_uri=uri)
    assert plain._experiment_name == LIGHTNING_DEFAULT_EXPERIMENT  # the default the adapter replaces
    assert plain._run_name is None and plain._run_id is None  # no run until the first use
    assert plain._tracking_uri == uri and plain._mlflow_client.tracking_uri == uri

    named = MLFlowLogger(tracking_uri=uri)
    named.name_unnamed("algo-task", "algo-task-seed3")
    named.log_metrics({"x": 1.0}, step=0)  # creates the run: the names set before it count
    client = MlflowClient(uri)
    run = client.get_run(named.run_id)
    assert run.info.run_name == "algo-task-seed3"
    assert client.get_experiment(run.info.experiment_id).name == "algo-task"
    named.name_unnamed("other", "other-seed0")  # too late: the run exists, nothing changes
    assert named._run_name == "algo-task-seed3"

    configured = MLFlowLogger(tracking_uri=uri, experiment_name="mine", run_name="r")
    configured.name_unnamed("algo-task", "algo-task-seed3")  # configured names win
    assert configured._experiment_name == "mine" and configured._run_name == "r"


def test_setting_the_run_id_makes_lightning_log_into_that_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    first = MLFlowLogger(tracking_uri=uri, experiment_name="e")
    first.log_metrics({"loss": 1.0}, step=1)
    first.finalize("success")
    resumed = MLFlowLogger(tracking_uri=uri, experiment_name="e")
    assert resumed.continue_run(first.run_id)
    resumed.log_metrics({"loss": 0.5}, step=2)
    client = MlflowClient(uri)
    history = [(m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")]
    assert sorted(history) == [(1, 1.0), (2, 0.5)]
    assert client.get_run(first.run_id).info.status == "RUNNING"
    assert len(client.search_runs([client.get_experiment_by_name("e").experiment_id])) == 1


def test_initialized_turns_true_once_lightning_has_created_the_experiment_and_run(tmp_path):
    # The adapter locks the store around Lightning's first `experiment` access, while `_initialized` is False.
    logger = LightningMLFlowLogger(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", experiment_name="e")
    assert logger._initialized is False and logger._run_id is None
    assert logger.experiment is logger._mlflow_client
    assert logger._initialized is True and logger._run_id is not None


def test_log_model_checkpoints_are_scanned_through_the_logger_experiment(tmp_path):
    # With a server, the adapter's finalize does what Lightning's does (scan the ModelCheckpoint it was given
    # with log_model=True, log through `experiment`) without its `get_run`, which waits for the server.
    import inspect

    logger = LightningMLFlowLogger(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", log_model=True)
    assert logger._checkpoint_callback is None  # until a ModelCheckpoint saves
    assert list(inspect.signature(logger._scan_and_log_checkpoints).parameters) == ["checkpoint_callback"]
    source = inspect.getsource(LightningMLFlowLogger._scan_and_log_checkpoints)
    assert "self.experiment.log_artifact(" in source
    assert "self._scan_and_log_checkpoints(self._checkpoint_callback)" in inspect.getsource(
        LightningMLFlowLogger.finalize
    )


def test_lightning_builds_its_client_by_name_and_mlflow_opens_the_store_in_the_constructor(tmp_path):
    # The adapter swaps `mlflow.tracking.MlflowClient` while Lightning's constructor runs, and tells an
    # opened client by MLflow's `_tracking_client`, which MLflow's constructor sets.
    import inspect

    constructor = inspect.getsource(LightningMLFlowLogger.__init__)
    assert "from mlflow.tracking import MlflowClient" in constructor
    assert "self._mlflow_client = MlflowClient(tracking_uri)" in constructor
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    assert (tmp_path / "m.db").is_file() and "_tracking_client" in client.__dict__


def test_the_store_is_opened_at_its_first_use_and_never_by_a_rank_other_than_0(tmp_path, monkeypatch):
    import pickle

    from lightning.pytorch.utilities import rank_zero_only

    from marl_lightning.tracking.loggers import deferred_client_class

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    first = MLFlowLogger(tracking_uri=uri, experiment_name="e")
    assert isinstance(first._mlflow_client, deferred_client_class())
    assert isinstance(first._mlflow_client, MlflowClient) and not first._mlflow_client.opened()
    assert list(tmp_path.iterdir()) == []  # built, nothing opened
    copy = pickle.loads(pickle.dumps(first._mlflow_client))  # (a deferred client of the same store)
    assert isinstance(copy, deferred_client_class()) and not copy.opened()
    first.log_metrics({"x": 1.0}, step=1)
    assert first._mlflow_client.opened() and (tmp_path / "m.db").is_file()
    assert copy.get_run(first.run_id).info.run_id == first.run_id and copy.opened()
    first.finalize("success")

    other = tmp_path / "rank1"
    other.mkdir()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    uri = f"sqlite:///{other / 'm.db'}"
    logger = MLFlowLogger(tracking_uri=uri, experiment_name="e")
    logger.name_unnamed("algo-task", "algo-task-seed0")
    logger.add_tags({"seed": "0"})
    assert logger.continue_run(first.run_id)  # rank 0 decides; the others only follow
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"x": 1.0}, step=2)
    _ = logger.experiment, logger.run_id
    logger.finalize("success")
    assert list(other.iterdir()) == [] and not logger._mlflow_client.opened()


def test_fabric_param_helpers_flatten_as_mlflow_params_are_named():
    flat = _flatten_dict(_convert_params({"model": {"lr": 0.1, "cells": [2, 3]}, "seed": 0}))
    assert flat == {"model/lr": 0.1, "model/cells": [2, 3], "seed": 0}


def _sources() -> list[Path]:
    return [*(REPO / "marl_lightning").rglob("*.py"), *(REPO / "callbacks").rglob("*.py")]


def _own_privates() -> set[str]:
    """Private names our own code defines: attributes it assigns, functions and classes it defines."""
    own = set()
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                own.add(node.name)
    return {name for name in own if name.startswith("_")}


def _private_uses(path: Path, own: set[str]) -> set[str]:
    """Private names of others used in a file: ``obj._x``, ``getattr(obj, "_x")``, ``from dep import _x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            found.add(node.attr)
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if is_call and node.func.id in {"getattr", "setattr"} and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant):
            found.add(str(node.args[1].value))
        imported = isinstance(node, ast.ImportFrom)
        if imported and not (node.module or "").startswith(("marl_lightning", "callbacks")):
            found |= {alias.name for alias in node.names}
    return {n for n in found if n.startswith("_") and not n.startswith("__") and n not in own}


# The adapters, each with the private names of its dependency it uses, pinned by the tests: Lightning's
# MLflow logger (the tests above) and TorchRL's MultiAgentMLP under torch.compile (tests/test_compile.py).
ADAPTERS = {
    "marl_lightning/tracking/loggers.py": {
        "_experiment_name", "_run_name", "_run_id", "_initialized", "_mlflow_client", "_tracking_uri",
        "_checkpoint_callback", "_scan_and_log_checkpoints", "_convert_params", "_flatten_dict",
    },
    "marl_lightning/models/compile.py": {"_empty_net", "_dynamo"},
}


def test_no_private_attribute_of_a_dependency_outside_the_adapters():
    own = _own_privates() - {"_experiment_name", "_run_name", "_run_id"}  # Lightning's, set by the adapter
    offenders = {}
    for path in _sources():
        uses = _private_uses(path, own)
        name = str(path.relative_to(REPO))
        if name not in ADAPTERS and uses:
            offenders[name] = sorted(uses)
    assert offenders == {}
    for name, pinned in ADAPTERS.items():
        assert _private_uses(REPO / name, own) == pinned, name
