"""Watching a policy: ``render`` on a tiny trained VMAS run (the real renderer, headless), the built-in
games' drawings, logging to the checkpoint's MLflow run, ``callbacks.EpisodeVideo`` in a fit, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image, ImageSequence

from marl_lightning.__main__ import cli_main
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import RatioGameTask, StochasticGameTask
from marl_lightning.render import check_output, record_episodes, write_video
from marl_lightning.render.command import main as render_main
from marl_lightning.tracking.loggers import MLFLOW_RUN_KEY
from tests.conftest import CONF, SMALL_RUN_ARGS, cli_args

STEPS = 20  # SMALL_RUN_ARGS: episodes of 20 steps
VIDEO_CALLBACK = {"class_path": "callbacks.EpisodeVideo",
                  "init_args": {"every_n_evaluations": 1, "size": 160}}


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-iteration MAPPO fit on VMAS navigation, evaluated (and filmed: EpisodeVideo) every iteration."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        cli_main(cli_args(
            "fit", "--model.init_args.total_frames", "400", "--trainer.val_check_interval", "1",
            f"--trainer.callbacks+={json.dumps(VIDEO_CALLBACK)}",
            # absolute: MLflow caches stores by URI within a process, across tests' working folders
            "--trainer.logger.init_args.tracking_uri", f"sqlite:///{root / 'mlflow.db'}",
        ))
    (ckpt,) = root.glob("checkpoints/**/last.ckpt")
    run_id = torch.load(ckpt, map_location="cpu", weights_only=True)[MLFLOW_RUN_KEY]
    return {"root": root, "ckpt": ckpt, "run_id": run_id, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def render_args(ckpt, output, *extra: str, config: str = "mappo.yaml") -> list[str]:
    return ["--config", str(CONF / config), *SMALL_RUN_ARGS, "--ckpt_path", str(ckpt),
            "--output", str(output), *extra]


@pytest.mark.simulator
def test_render_vmas_headless_gif_logged_to_the_checkpoints_run(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "episode.gif"
    status = render_main(
        render_args(trained["ckpt"], output, "--size", "200", "--tracking-uri", trained["uri"])
    )
    assert status == 0
    frames = gif_frames(output)
    assert len(frames) == STEPS + 1  # the reset, then one frame per step
    assert frames[0].shape == (222, 200, 3)  # 200 px wide, plus the caption strip
    assert any(not np.array_equal(frames[0], frame) for frame in frames[1:])
    scene = [frame[:200] for frame in frames]  # VMAS's drawing, without the caption: the agents move
    assert not np.array_equal(scene[0], scene[-1])
    printed = capsys.readouterr().out
    assert "navigation: 1 deterministic episode(s) of 20 steps" in printed
    assert "mean episode return" in printed
    artifacts = MlflowClient(trained["uri"]).list_artifacts(trained["run_id"], "videos")
    assert "videos/episode.gif" in {a.path for a in artifacts}


@pytest.mark.simulator
def test_episode_video_callback_logs_a_gif_per_evaluation(trained):
    client = MlflowClient(trained["uri"])
    videos = sorted(a.path for a in client.list_artifacts(trained["run_id"], "videos") if "frames_" in a.path)
    assert videos[:2] == ["videos/frames_000000200.gif", "videos/frames_000000400.gif"]
    local = client.download_artifacts(trained["run_id"], videos[0], str(trained["root"] / "downloaded"))
    assert len(gif_frames(local)) == STEPS + 1


@pytest.mark.simulator
@pytest.mark.slow
def test_render_from_mlflow_run_paths_logs_into_that_run(trained, tmp_path, monkeypatch):
    client = MlflowClient(trained["uri"])
    client.log_artifact(trained["run_id"], str(trained["ckpt"]), "checkpoints")
    run = f"runs:/{trained['run_id']}"
    monkeypatch.chdir(tmp_path)
    status = render_main([
        "--config", f"{run}/config.yaml", "--ckpt_path", f"{run}/checkpoints/last.ckpt",
        "--output", str(tmp_path / "from_run.gif"), "--episodes", "2", "--size", "120",
        "--tracking-uri", trained["uri"],
    ])
    assert status == 0
    assert len(gif_frames(tmp_path / "from_run.gif")) == 2 * (STEPS + 1)
    assert "videos/from_run.gif" in {a.path for a in client.list_artifacts(trained["run_id"], "videos")}


def state_actions(td):
    """A stand-in policy for the stochastic game: agent i plays (state + i) mod 3."""
    observation = td.get(keys.OBSERVATION)  # [E, A, F], F = one-hot state (9), one-hot t
    agents = torch.arange(observation.shape[1])
    return td.set(keys.ACTION, (observation[..., :9].argmax(-1) + agents) % 3)


def test_stochastic_game_drawing_shows_state_time_and_actions(tmp_path):
    task = StochasticGameTask(n_states=9, n_agents=3, n_actions=3, horizon=6)
    recording = record_episodes(state_actions, task, episodes=2, seed=1)
    assert recording.lengths.tolist() == [6, 6]
    assert [len(episode) for episode in recording.frames] == [7, 7]
    # every frame's state, time and actions differ from the previous one's drawing
    frames = recording.video_frames()
    assert len({frame.shape for frame in frames}) == 1
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))
    assert recording.returns.shape == (2, 3) and bool((recording.returns > 0).all())  # rewards in [0, 1)
    assert torch.allclose(recording.returns[:, 0], recording.returns[:, 2])  # one team reward
    path = write_video(frames, tmp_path / "game.gif", fps=5)
    assert len(gif_frames(path)) == 14


def test_ratio_game_episodes_end_at_their_stop(tmp_path):
    # both agents always play 0: reward 1 and a stop with probability 1, so every episode lasts one step
    def always_zero(td):
        return td.set(keys.ACTION, torch.zeros(td.get(keys.OBSERVATION).shape[:2], dtype=torch.long))

    recording = record_episodes(always_zero, RatioGameTask(), episodes=3, seed=0)
    assert recording.lengths.tolist() == [1, 1, 1]
    assert recording.mean_return == pytest.approx(1.0)
    assert [len(episode) for episode in recording.frames] == [2, 2, 2]


def test_unsupported_output_suffix_is_one_paragraph(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["render", "--config", "mappo.yaml", "--ckpt_path", "x.ckpt", "--output", "e.avi"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "--output e.avi" in message and ".gif or .mp4" in message and "e.gif" in message
    assert "Traceback" not in message and len(message.strip().splitlines()) == 1


def test_mp4_names_the_writer_to_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    with pytest.raises(ConfigError, match=r"pip install av"):
        check_output("episode.mp4")


def test_unknown_checkpoint_path_is_one_paragraph(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["render", *render_args(tmp_path / "missing.ckpt", "e.gif")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "missing.ckpt is not a file" in message and "Traceback" not in message


def test_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        render_main(render_args(tmp_path / "notes.ckpt", tmp_path / "e.gif"))


@pytest.mark.simulator
def test_checkpoint_of_another_config_is_refused(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fix = r"does not fit the model .*ippo\.yaml.*runs:/<run_id>/config\.yaml"
    with pytest.raises(ConfigError, match=fix):
        render_main(render_args(trained["ckpt"], tmp_path / "e.gif", "--no-log", config="ippo.yaml"))
    assert not (tmp_path / "e.gif").exists()


def test_bad_episode_count_is_refused():
    with pytest.raises(ConfigError, match=r"--episodes must be > 0, got 0"):
        render_main(["--config", "c.yaml", "--ckpt_path", "x.ckpt", "--episodes", "0"])
