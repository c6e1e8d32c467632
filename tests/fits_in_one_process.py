"""Several fits, one after another, in one process: ``python -m tests.fits_in_one_process '<json>'``, the
JSON a list of argument lists of ``python -m marl_lightning``.

Under ``torchrun`` every fit of the list runs on the process group the first one created (Lightning keeps
an initialised group), so a test of several algorithms on several ranks pays the launch, the imports and
the rendezvous once (``tests/test_multinode.py``).
"""

from __future__ import annotations

import json
import sys

from marl_lightning.__main__ import cli_main


def main(argv: list[str]) -> None:
    for args in json.loads(argv[0]):
        cli_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
