"""Checkpoints are written beside and renamed: a failed or killed write never touches the last good one."""

from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path

import pytest

from marl_lightning.cli import MarlCLI
from tests.conftest import checkpoint_iterations, cli_args, cli_command

pytestmark = pytest.mark.simulator


def _fit(folder: Path, iterations: int, *extra: str) -> MarlCLI:
    return MarlCLI(args=cli_args("fit", "--trainer.logger", "false", "--trainer.callbacks.init_args.dirpath",
                                 str(folder), "--model.total_frames", str(200 * iterations), *extra)[1:],
                  run=False)


def _small_files_only() -> None:
    """In the child: no file may grow past 20 kB (the kernel refuses the write with EFBIG, as a full disk
    refuses it with ENOSPC); SIGXFSZ ignored, so the write fails instead of killing the process."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_failed_checkpoint_write_stops_the_fit_with_a_clear_error_and_the_previous_one_intact(in_tmp):
    folder = in_tmp / "ckpt"
    cli = _fit(folder, 2)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    before = (folder / "last.ckpt").read_bytes()
    assert len(before) > 20_000
    command = cli_command("fit", "--trainer.logger", "false", "--trainer.callbacks.init_args.dirpath",
                          str(folder), "--model.total_frames", str(200 * 4), "--ckpt_path", "last")
    proc = subprocess.run(command, capture_output=True, text=True, cwd=in_tmp, timeout=300,
                          preexec_fn=_small_files_only)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("marl_lightning: error:")]
    assert f"Writing the checkpoint {folder / 'last.ckpt'} failed: File too large" in line
    assert f"The previous checkpoint {folder / 'last.ckpt'} is intact" in line
    assert (folder / "last.ckpt").read_bytes() == before and checkpoint_iterations(folder / "last.ckpt") == 2
    assert not (folder / "last.ckpt.partial").exists()


def test_a_truncated_partial_file_is_never_resumed_from_and_is_overwritten(in_tmp):
    folder = in_tmp / "ckpt"
    cli = _fit(folder, 1)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (folder / "last.ckpt.partial").write_bytes(b"PK\x03\x04 what a kill -9 mid-write leaves")
    checkpoint = cli.trainer.checkpoint_callback
    assert checkpoint.last_path() == str(folder / "last.ckpt")  # the complete one
    cli = _fit(folder, 2)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(folder / "last.ckpt"))
    assert checkpoint_iterations(folder / "last.ckpt") == 2 and not (folder / "last.ckpt.partial").exists()
