"""``python -m marl_lightning replay``: send what a fit spooled while its tracking server was away.

    python -m marl_lightning replay checkpoints/<experiment>/<run>/mlflow-spool-<run_id>.jsonl
    python -m marl_lightning replay checkpoints/                  # every spool under a folder
    python -m marl_lightning replay <spool> --tracking-uri http://new-host:5000   # the server moved

A fit logging to a tracking server keeps what the server has not taken in a spool file
(``marl_lightning.tracking.spool``) and names it when it ends. This sends the records the server does not
have yet into the run, in order (metrics, artifacts, tags, then the run's final status), and removes the
file. Sending a record twice is harmless, so a replay cut off half-way is simply run again. Exit status 0
when every spool was sent, 1 when a server did not take one (it is kept, with what was delivered marked),
2 for a path that is no spool.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marl_lightning.core.errors import ConfigError
from marl_lightning.tracking.spool import read, replay, spool_files
from marl_lightning.tracking.store import open_store


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m marl_lightning replay",
        description="Send the records a fit spooled while its MLflow tracking server was away into the run.",
    )
    p.add_argument("paths", nargs="+",
                   help="spool files (mlflow-spool-<run_id>.jsonl) or folders holding them")
    p.add_argument("--tracking-uri", "--tracking_uri", dest="tracking_uri", default=None,
                   help="the tracking server to send to (default: the one the spool was written for)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    spools = {}  # path -> header, every path checked before anything is sent
    for path in spool_files(args.paths):
        if not path.is_file():
            raise ConfigError(f"replay: {path} does not exist. Pass the spool file the fit named "
                              "(mlflow-spool-<run_id>.jsonl) or a folder holding spools.")
        try:
            spools[path] = read(path)[0]
        except (ValueError, UnicodeDecodeError) as error:
            raise ConfigError(f"replay: {error}.") from None
    if not spools:
        print(f"replay: no spool under {', '.join(args.paths)}: nothing to send.")
        return 0
    failed = 0
    for path, header in spools.items():
        uri = args.tracking_uri or header["tracking_uri"]
        try:
            counts = replay(path, open_store(uri, must_exist=False))
        except ConfigError as error:  # the server does not answer: this spool waits, the others go on
            print(f"replay: {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        except Exception as error:  # noqa: BLE001 - cut off half-way: what was delivered is marked
            print(f"replay: {path}: the server stopped taking records ({error}); what it took is marked, "
                  "run the same command again to send the rest.", file=sys.stderr)
            failed += 1
            continue
        print(f"replay: {path.name}: {counts['records']} record(s) ({counts['metric values']} metric values, "
              f"{counts['artifacts']} artifact(s)) sent into run {header['run_id']} at {uri}; "
              f"{Path(path)} removed.")
    return 1 if failed else 0
