"""marl_lightning: cooperative multi-agent trust-region policy gradients on PyTorch Lightning.

The algorithm classes (``marl_lightning.MAPPO``, the ``class_path`` of ``conf/*.yaml``) and the data module
are imported on first use (PEP 562), so ``python -m marl_lightning --help``, the workflows that only read
MLflow and every ``import marl_lightning.<part>`` pay for torch and Lightning only where they need them.
"""

from __future__ import annotations

import importlib
from typing import Any

# Name -> the module that defines it (tests/test_layers.py checks this against algorithms.__all__).
_EXPORTS = {
    **dict.fromkeys(
        ["DPO", "IPPO", "JRPPO", "MAPPO", "PERLAIPPO", "PERLAMAPPO", "MultiAgentPPOModule",
         "PessimisticSequentialPPO", "SequentialPPO"],
        "marl_lightning.algorithms",
    ),
    "RolloutDataModule": "marl_lightning.data",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'marl_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
