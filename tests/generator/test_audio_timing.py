"""Audio timing (issue 10 defect 4): where a sound lands in the per-frame features, and exactly
which video frames each latent frame's audio window reads."""

from __future__ import annotations

import numpy as np
import torch

from generator.audio import wav2vec2_frame_features
from generator.presets import TINY_TRANSFORMER_CONFIG
from generator.transformer_actavatar import ActAvatarAudioProjection


class _EnergyEncoder(torch.nn.Module):
    """Stands in for Wav2Vec2 with its exact framing: the CNN feature encoder has a receptive
    field of 400 samples and a hop of 320 (50 Hz at 16 kHz); each hidden state here is the
    frame's energy, so the features show where the sound is, and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, values: torch.Tensor, output_hidden_states: bool = True):
        frames = values.unfold(-1, 400, 320)  # (B, T, 400)
        energy = frames.pow(2).sum(-1, keepdim=True)  # (B, T, 1)
        return type("Out", (), {"hidden_states": (energy, energy, energy)})()


def test_real_wav2vec2_framing_matches_the_stand_in():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    model = Wav2Vec2Model(cfg).eval()
    wav = torch.zeros(1, 32000)
    with torch.no_grad():
        real = model(wav).last_hidden_state.shape[1]
    assert real == _EnergyEncoder()(wav).hidden_states[0].shape[1] == 99


def test_click_at_one_second_peaks_at_video_frame_25():
    def fe(wav, sampling_rate, return_tensors):
        return {"input_values": torch.as_tensor(wav)[None]}

    for fps, frame in ((25.0, 25), (24.0, 24), (30.0, 30)):
        num_frames = int(2 * fps) + 1
        wav = np.zeros(int(num_frames / fps * 16000), dtype=np.float32)
        wav[16000] = 1.0  # a click at exactly 1.0 s
        feats = wav2vec2_frame_features(wav, _EnergyEncoder(), fe, num_frames, fps=fps)
        assert feats.shape == (1, num_frames, 2, 1)
        curve = feats[0, :, 0, 0]
        assert int(curve.argmax()) == frame, (fps, curve.nonzero().flatten().tolist())
        assert curve[frame - 2] == 0 and curve[frame + 2] == 0  # nowhere near other frames


def test_each_latent_frame_reads_exactly_its_video_frames_plus_window():
    cfg = TINY_TRANSFORMER_CONFIG
    torch.manual_seed(0)
    proj = ActAvatarAudioProjection(
        cfg["audio_in_dim"], cfg["audio_layers"], window=2, temporal_stride=4, num_tokens=2
    ).eval()
    n_video = 17  # latent frames 0..4
    feats = torch.randn(1, n_video, cfg["audio_layers"], cfg["audio_in_dim"])
    with torch.no_grad():
        base = proj(feats)
        reads: dict[int, set[int]] = {f: set() for f in range(base.shape[1])}
        for v in range(n_video):
            changed = feats.clone()
            changed[:, v] += 1.0
            delta = (proj(changed) - base).abs().amax(dim=(0, 2, 3))
            for f in torch.nonzero(delta > 0).flatten().tolist():
                reads[f].add(v)
    # latent 0 = video 0 (+2 neighbours, edge-replicated); latent f = video 4f-3..4f (+-2)
    assert reads[0] == {0, 1, 2}
    for f in range(1, 5):
        expected = set(range(max(0, 4 * f - 3 - 2), min(n_video - 1, 4 * f + 2) + 1))
        assert reads[f] == expected, (f, sorted(reads[f]))
    assert reads[1] == {0, 1, 2, 3, 4, 5, 6} and reads[4] == {11, 12, 13, 14, 15, 16}
