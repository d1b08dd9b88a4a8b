"""Each metric on hand-built clips with exactly known answers."""

import numpy as np
import pytest

from generator.eval.metrics import action_metrics, aggregate, lip_sync, score_clip
from generator.eval.world import SyntheticWorld, WorldConfig

WINDOWS = [(0, 3), (5, 8)]
ACTS = [1, 3]


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(observation_noise=0.0))


@pytest.fixture(scope="module")
def clip(world):
    return world.make_clip(np.random.default_rng(7), combo=(tuple(ACTS), tuple(WINDOWS)))


def test_perfect_clip(world, clip):
    s = score_clip(world, clip.latents, clip)
    assert s["hits"] == [1.0, 1.0] and s["ious"] == [1.0, 1.0]
    assert s["action_acc"] == 1.0 and s["frame_acc"] == 1.0
    assert s["lip_corr"] == pytest.approx(1.0, abs=1e-9) and s["lip_lag"] == 0.0
    assert s["identity_err"] == pytest.approx(0.0, abs=1e-6)


def test_shifted_actions_and_delayed_mouth(world, clip):
    labels = np.roll(clip.labels, 1)  # every action one frame late
    mouth = np.concatenate([[clip.envelope[0]], clip.mouth])  # latent-frame mouth
    late = np.concatenate([mouth[:1], mouth[:1], mouth[1:-1]])  # generated mouth delayed by 1
    x = world.render(labels, late, clip.identity)
    s = score_clip(world, x, clip)
    assert s["hits"] == [1.0, 1.0]  # 2 of 3 window frames still show the action
    assert s["ious"] == [0.5, 0.5]  # |{1,2}| / |{0,1,2,3}|
    assert s["action_acc"] == 1.0
    assert s["frame_acc"] == pytest.approx(8 / 12)  # frames 0, 3, 5, 8 wrong of 12
    assert s["lip_lag"] == 1.0 and s["lip_best_corr"] == pytest.approx(1.0, abs=1e-9)
    assert s["lip_corr"] < 0.9


def test_swapped_actions_and_garbled_identity(world, clip):
    labels = clip.labels.copy()
    labels[0:3], labels[5:8] = 3, 1  # right windows, wrong actions
    x = world.render(labels, np.concatenate([[0.0], clip.mouth]), -clip.identity)
    s = score_clip(world, x, clip)
    assert s["hits"] == [0.0, 0.0] and s["ious"] == [0.0, 0.0] and s["action_acc"] == 0.0
    assert s["identity_err"] == pytest.approx(2.0, abs=1e-6)  # |-I - I| / |I|


def test_action_metrics_rest_only():
    m = action_metrics(np.zeros(10, dtype=int), WINDOWS, ACTS)
    assert m["hits"] == [0.0, 0.0] and m["ious"] == [0.0, 0.0] and np.isnan(m["action_acc"])


def test_lip_sync_lags_both_ways():
    truth = np.array([0.1, 0.9, 0.2, 0.7, 0.0, 0.5, 0.3, 0.8, 0.1, 0.6])
    early = np.concatenate([truth[2:], [0.4, 0.4]])  # pred[j] = truth[j + 2]
    assert lip_sync(early, truth)["lip_lag"] == -2.0
    flat = lip_sync(np.full(10, 0.5), truth)
    assert flat["lip_corr"] == 0.0 and flat["mouth_err"] == pytest.approx(
        np.abs(truth - 0.5).mean()
    )


def test_aggregate_pools_phases():
    scores = [
        {
            "hits": [1.0, 0.0],
            "ious": [1.0, 0.0],
            "action_acc": 1.0,
            "frame_acc": 1.0,
            "lip_corr": 1.0,
            "lip_lag": 0.0,
            "mouth_err": 0.0,
            "identity_err": 0.0,
        },
        {
            "hits": [1.0, 1.0],
            "ious": [0.5, 0.5],
            "action_acc": float("nan"),
            "frame_acc": 0.5,
            "lip_corr": 0.5,
            "lip_lag": -2.0,
            "mouth_err": 0.2,
            "identity_err": 1.0,
        },
    ]
    a = aggregate(scores)
    assert a["hit_rate"] == 0.75 and a["temporal_iou"] == 0.5 and a["action_acc"] == 1.0
    assert a["lip_abs_lag"] == 1.0 and a["frame_acc"] == 0.75
