"""``--ckpt_path``: the checkpoint is read without running any code in it, and must fit the config.

Checked against the configuration the user gave, before anything is built (LightningCLI would otherwise
put the checkpoint's hyperparameters over the command line, silently training the checkpoint's
algorithm and networks instead): the algorithm, the settings that shape its networks, and the task.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

from marl_lightning.core.errors import ConfigError

# Model settings a checkpoint's parameters are shaped by.
NETWORK_SETTINGS = ("actor_cells", "critic_cells", "activation", "share_actor_params", "share_critic_params")


def load_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint at ``path`` as tensors and plain values (``torch.load(weights_only=True)``).

    A file holding pickled Python objects (which unpickling would run) is refused with a ConfigError.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"--ckpt_path {path}: no such file. Pass the path of a last.ckpt (or a runs:/ "
                          "URI), `last` for this run's own, or start without --ckpt_path.")
    if not zipfile.is_zipfile(path):  # torch.save's format; an old or foreign pickle is refused too
        raise ConfigError(f"--ckpt_path {path}: not a readable checkpoint (not a file torch.save writes).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"--ckpt_path {path}: refused: the file holds pickled Python objects, which loading would run as "
            f"code ({first[:200]}). Only checkpoints of tensors and plain values, as marl_lightning writes "
            "them, are loaded."
        ) from None
    except Exception as error:  # not a torch file at all: truncated, another format
        raise ConfigError(
            f"--ckpt_path {path}: not a readable checkpoint ({type(error).__name__}: {str(error)[:200]})."
        ) from None


def check_fits_config(path: str, checkpoint: Mapping[str, Any], config: Any) -> None:
    """The checkpoint's algorithm, network settings and task are the config's (``config``: the parsed
    subcommand namespace, with ``model`` and ``data.env`` as class_path/init_args)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    saved_class = str(hparams.get("_class_path", "")).rsplit(".", 1)[-1]
    model = config.get("model") or {}
    wanted_class = str(model.get("class_path", "")).rsplit(".", 1)[-1]
    if saved_class and wanted_class and saved_class != wanted_class:
        raise ConfigError(
            f"--ckpt_path {path}: the checkpoint is of {saved_class}, this config trains {wanted_class}. "
            f"Use the config it was trained with (its run's config.yaml, or conf/{saved_class.lower()}"
            ".yaml), or start without --ckpt_path."
        )
    init_args = model.get("init_args") or {}
    differing = {key: (hparams[key], init_args[key]) for key in NETWORK_SETTINGS
                 if key in hparams and key in init_args and _plain(hparams[key]) != _plain(init_args[key])}
    if differing:
        listed = "; ".join(f"model.{key} is {saved} in it, {given} here"
                           for key, (saved, given) in differing.items())
        raise ConfigError(
            f"--ckpt_path {path}: the checkpoint's networks have other shapes: {listed}. Resume with its "
            "settings (drop these overrides), or start without --ckpt_path."
        )
    saved_env = dict((checkpoint.get("datamodule_hyper_parameters") or {}).get("env") or {})
    env = (config.get("data") or {}).get("env") or {}
    wanted_env_class = str(env.get("class_path", "")).rsplit(".", 1)[-1]
    saved_env_class = saved_env.pop("class", "")
    env_args = env.get("init_args") or {}
    task_diff = [f"data.env is {saved_env_class} in it, {wanted_env_class} here"] if (
        saved_env_class and wanted_env_class and saved_env_class != wanted_env_class) else []
    task_diff += [f"data.env.{key} is {saved_env[key]!r} in it, {env_args[key]!r} here" for key in saved_env
                  if key in env_args and _plain(saved_env[key]) != _plain(env_args[key])]
    if task_diff:
        raise ConfigError(
            f"--ckpt_path {path}: the checkpoint is of another task: {'; '.join(task_diff)}. Resume on the "
            "task it was trained on (its run's config.yaml), or start without --ckpt_path."
        )


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (YAML gives lists, signatures tuples)."""
    return list(value) if isinstance(value, list | tuple) else value
