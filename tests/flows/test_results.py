"""Where the produce-video summary and the step cache are kept (the served round trip is in
tests/scale/test_server.py)."""

from pathlib import Path

from prefect.settings import get_current_settings

from flows.runtime.results import STORAGE_ENV, persisted_result, result_storage
from flows.video.produce import produce_video
from flows.video.steps import CACHED, render_step


def test_the_summary_goes_under_the_home_unless_a_folder_or_block_is_named(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.setenv("AVATAR_FLOW_HOME", "/srv/af")
    assert result_storage() == Path("/srv/af/results")
    monkeypatch.setenv(STORAGE_ENV, "/mnt/shared/results")
    assert result_storage() == Path("/mnt/shared/results")
    monkeypatch.setenv(STORAGE_ENV, "s3-bucket/avatar-results")  # a saved Prefect block
    assert result_storage() == "s3-bucket/avatar-results"
    assert persisted_result()["result_serializer"] == "json"


def test_produce_video_persists_its_summary_as_json_and_the_steps_keep_their_cache():
    assert produce_video.persist_result is True
    assert produce_video.result_serializer == "json"
    assert produce_video.result_storage == result_storage()
    # A task without its own storage would inherit the flow's and miss every existing cache.
    local = Path(get_current_settings().results.local_storage_path).expanduser()
    assert CACHED["result_storage"] == render_step.result_storage == local
