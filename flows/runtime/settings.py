"""Settings read from the environment (a run started from the Prefect UI never sees the CLI)."""

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVATAR_FLOW_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".avatar-flow")
    database_url: str | None = None
    # Speech and words.
    max_audio_seconds: float = 600.0
    asr_model: str | None = None  # faster-whisper model dir or name in the HF cache
    align_model: str | None = None  # wav2vec2 CTC model dir or name in the HF cache
    # Segmentation.
    segment_seconds: float = 5.0
    # The MLLM planner's endpoint is read by planners.MLLMSettings (AVATAR_FLOW_LLM_*).
    # ActAvatar renderer.
    checkpoint: Path | None = None
    device: str | None = None
    render_steps: int = 40  # denoising steps per segment (the paper's 40)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'avatar-flow.db'}"

    @property
    def assets_dir(self) -> Path:
        return self.home / "assets"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def openai_api_key(self) -> SecretStr | None:
        key = os.environ.get("OPENAI_API_KEY")
        return SecretStr(key) if key else None


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return Settings()


def get_settings(refresh: bool = False) -> Settings:
    if refresh:
        _cached.cache_clear()
    return _cached()
