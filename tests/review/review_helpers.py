"""Constants shared by the review tests (import from here, not from conftest)."""

N_WORDS = 30
CUE = "waves hello with the right hand"
PLAN = {
    "schema_version": 1,
    "planner": "rules",
    "base": {
        "identity": "A presenter",
        "scene": "a bright studio",
        "mood": "calm and friendly",
        "style": "natural lighting",
        "motion": "steady upper body",
    },
    "phases": [
        {"action": CUE, "first_word": 2, "last_word": 5, "source": "cue"},
        {"action": "nods gently", "first_word": 20, "last_word": 23, "source": "lexicon"},
    ],
}


def word_times(i: int) -> tuple[float, float]:
    return round(i * 0.4, 3), round(i * 0.4 + 0.3, 3)


# Debian's chromium, driven by Playwright (its own browser download is not used).
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
