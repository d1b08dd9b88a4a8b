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


def settled(page, timeout: float = 30_000) -> None:
    """Wait until the review page says it is idle (`<body data-idle>`, set by review.js once no
    request, debounced check, run poll, video load or seek is pending and the last redraw has
    been laid out). Every action that redraws or asks the server removes the mark in the same
    task, so waiting for it after an action waits for that action's effects: never for time."""
    page.wait_for_selector("body[data-idle]", state="attached", timeout=timeout)
