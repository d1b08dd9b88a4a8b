"""The non-default speech and timing paths, exercised offline for real:
OpenAI TTS through the `openai` client against a loopback server, and WhisperX forced
alignment with a tiny random wav2vec2 CTC model (timings meaningless, code path real)."""

import io
import json
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from flows.video.speech import prepare_speech, read_wav, synthesize_openai
from flows.video.words import transcribe

SECRET = "sk-tts-secret-42"


def _wav_bytes(seconds: float = 1.5, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes((tone * 32767).astype("<i2").tobytes())
    return buf.getvalue()


class _TTS(BaseHTTPRequestHandler):
    bodies: list = []
    auth: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _TTS.bodies.append((self.path, body))
        _TTS.auth.append(self.headers.get("Authorization"))
        data = _wav_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def tts_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _TTS)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _TTS.bodies.clear()
    _TTS.auth.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_openai_tts_voice(tmp_path, tts_server):
    dest = synthesize_openai("Hello there.", tmp_path / "tts.wav", "nova", SECRET, tts_server)
    path, body = _TTS.bodies[0]
    assert path == "/v1/audio/speech"
    assert (
        body["voice"] == "nova"
        and body["input"] == "Hello there."
        and body["response_format"] == "wav"
    )
    assert _TTS.auth[0] == f"Bearer {SECRET}"
    samples, rate = read_wav(dest)
    assert rate == 24000 and len(samples) == 36000
    tracks = prepare_speech(
        text="Hello there.",
        voice="openai:nova",
        audio=None,
        work_dir=tmp_path / "w",
        max_seconds=60,
        openai_api_key=SECRET,
        openai_base_url=tts_server,
    )
    assert tracks.source == "openai:nova" and tracks.sample_rate == 24000
    assert tracks.duration == pytest.approx(1.5, abs=0.01)


def _tiny_ctc_model(folder):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True)
    letters = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c: i + 5 for i, c in enumerate(letters)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=False
    )
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(folder)
    cfg = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    Wav2Vec2ForCTC(cfg).save_pretrained(folder)
    return folder


def test_whisperx_forced_alignment_path(tmp_path):
    model_dir = _tiny_ctc_model(tmp_path / "w2v")
    rate = 16000
    t = np.arange(3 * rate) / rate
    audio = (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    words = ["Hello", "there,", "2", "friends."]
    tr = transcribe(
        audio, known_words=words, align_model=str(model_dir), nltk_dir=tmp_path / "nltk"
    )
    assert tr.aligner == "whisperx-align:w2v"
    assert [w.word for w in tr.words] == words
    assert tr.words[2].interpolated  # a digit is outside the CTC alphabet: interpolated, flagged
    for a, b in zip(tr.words, tr.words[1:]):
        assert a.start <= a.end <= b.start
    assert tr.words[-1].end <= 3.0
    assert (
        tmp_path / "nltk" / "tokenizers" / "punkt_tab" / "english" / "abbrev_types.txt"
    ).is_file()
