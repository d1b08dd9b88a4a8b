"""Multi-GPU: Ulysses degree checks, and the torchrun launch + rendezvous on CPU (gloo).

Rendering with context parallelism itself needs CUDA GPUs and an ActAvatar checkpoint; it is
not exercised here (see the README)."""

import json

import pytest

from flows.runtime.errors import InputError
from flows.video.multigpu import (
    check_ulysses,
    latent_frames,
    launch,
    torchrun_command,
    transformer_heads,
)


def test_degree_must_divide_heads_and_latent_frames():
    assert latent_frames(125) == 32 and latent_frames(81) == 21
    for degree in (1, 2, 4, 8):
        check_ulysses(degree, heads=24, num_frames=125)
    with pytest.raises(InputError, match="24 attention heads"):
        check_ulysses(5, heads=24, num_frames=125)
    with pytest.raises(InputError, match="21 latent frames"):
        check_ulysses(2, heads=24, num_frames=81)
    with pytest.raises(InputError, match="at least 1"):
        check_ulysses(0, heads=24, num_frames=125)


def test_heads_come_from_the_checkpoint(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"num_attention_heads": 24}))
    assert transformer_heads(str(tmp_path)) == 24
    with pytest.raises(InputError, match="config.json"):
        transformer_heads(str(tmp_path / "nope"))


def test_torchrun_command_uses_loopback_rendezvous(tmp_path):
    cmd = torchrun_command(4, tmp_path / "p.json", 29555)
    assert "--nproc-per-node=4" in cmd and "--master-addr=127.0.0.1" in cmd
    assert cmd[cmd.index("-m", 3) + 1] == "flows.video.multigpu"


@pytest.mark.slow
def test_two_processes_rendezvous_and_all_reduce_over_gloo():
    results = launch(2, {"kind": "selftest"}, timeout=180)
    assert [(r["rank"], r["world"], r["backend"]) for r in results] == [
        (0, 2, "gloo"),
        (1, 2, "gloo"),
    ]
    assert [r["sum"] for r in results] == [3.0, 3.0]  # (0 + 1) + (1 + 1) on every rank


def test_render_parallel_checks_before_launching(tmp_path):
    from support import render_job

    from flows.video.multigpu import render_parallel
    from flows.video.segments import plan_segments
    from planners.schema import BaseBlock, Plan, Transcript, Word

    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"num_attention_heads": 24}))
    words = [Word(word="hi", start=0.2, end=0.6)]
    tr, plan = Transcript(words=words, duration=3.2), Plan(planner="t", base=BaseBlock())
    specs = plan_segments(words, 3.2, plan, fps=25)
    assert specs[0].render_frames == 81  # 21 latent frames: odd, so 2 GPUs cannot split them
    job = render_job(tr, plan, specs, renderer="actavatar", checkpoint=str(tmp_path))
    with pytest.raises(InputError, match="latent frames"):
        render_parallel(specs[0], job, [], ["cuda:0", "cuda:1"])
    with pytest.raises(InputError, match="checkpoint"):
        render_parallel(
            specs[0], job.model_copy(update={"checkpoint": None}), [], ["cuda:0", "cuda:1"]
        )
