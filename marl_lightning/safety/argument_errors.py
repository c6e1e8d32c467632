"""jsonargparse's argument errors, retold in one paragraph: the field, the value, and the fix.

jsonargparse reports a bad value inside a subclass (``--model.lr abc``) as a nested tree of union
subtypes, class paths and parser keys; :func:`one_paragraph` finds the field and the reason in it.
:func:`check_config_files` reads every ``--config`` file first, so a missing file or a YAML syntax error is
named with its path and line before LightningCLI sees it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from marl_lightning.core.errors import ConfigError
from marl_lightning.core.paths import CONF

# What a class_path may name, by the field it is given for.
_CHOICES = {
    "model": "an algorithm: marl_lightning.{MAPPO, IPPO, DPO, JRPPO, PERLAMAPPO, PERLAIPPO, SequentialPPO, "
             "PessimisticSequentialPPO} (or start from one of conf/*.yaml)",
    "data.env": "a task: marl_lightning.envs.{Vmas, PettingZoo, StochasticGameTask, RatioGameTask} (or one "
                "of conf/env/*.yaml)",
}


def check_config_files(argv: Sequence[str]) -> None:
    """Every ``--config`` file exists and is valid YAML; else a ConfigError naming it (and the line)."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            path = argv[index + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        file = Path(path)
        if not file.is_file():
            near = difflib.get_close_matches(file.name, [p.name for p in CONF.rglob("*.yaml")], n=3)
            hint = f" Did you mean {', '.join(near)} (in conf/)?" if near else " The configs are in conf/."
            raise ConfigError(f"--config {path}: the file does not exist.{hint}")
        try:
            yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(
                f"--config {path}: not valid YAML{where}: {problem}. Fix the file (a YAML linter shows the "
                "spot) and run again."
            ) from None


def one_paragraph(message: str) -> str:
    """jsonargparse's message about a bad argument as ``<field>: <what is wrong>. <fix>``."""
    field = ".".join(re.findall(r'Parser key "([^"]+)"', message))
    value = _group(r"Given value: (.*)", message)

    missing = re.search(r"class_path '([^']+)':\s*module '[^']+' has no attribute '([^']+)'", message)
    if missing:
        choices = _CHOICES.get(field, "an existing class")
        return f"{field}: there is no class {missing.group(1)}. Give {choices}."
    rejected = re.search(r"class_path '([^']+)':\s*Option '([^']+)' is not accepted", message)
    if rejected:
        cls, option = rejected.groups()
        near = difflib.get_close_matches(option, _settings(cls), n=3)
        hint = f" Did you mean {', '.join(near)}?" if near else f" Its settings: {', '.join(_settings(cls))}."
        return f"{field}.{option}: {cls.rsplit('.', 1)[-1]} has no setting {option!r}.{hint}"
    literal = re.search(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)", message)
    if literal:
        return f"{field}: {literal.group(2).strip()!r} is not one of {literal.group(1)}."
    typed = re.search(r"Expected a <class '([\w.]+)'>\. Got value: (.*)", message)
    if typed:
        kind = typed.group(1).rsplit(".", 1)[-1]
        return f"{field}: expected {_article(kind)} {kind}, got {typed.group(2).strip()!r}."
    kinds = re.findall(r"- Expected a <class '(\w+)'>", message)
    if field and value is not None and kinds and set(kinds) != {"NoneType"}:
        expected = " or ".join(k for k in kinds if k != "NoneType")
        return f"{field}: expected {_article(expected)} {expected}, got {value.strip()!r}."
    # Anything else: jsonargparse's own words, on one line.
    kept = [line.strip() for line in message.splitlines()
            if line.strip() and not line.strip().startswith(("Subtypes:", "Given value type:", "Errors:"))
            and "Expected a <class 'NoneType'>" not in line]
    return " ".join(kept)


def _group(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _settings(class_path: str) -> list[str]:
    """The constructor arguments of a class and of the bases it hands ``**kwargs`` to."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return []
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names += [p.name for p in parameters if p.name != "self" and p.name not in names
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return [n for n in names if n != "env_spec"]
