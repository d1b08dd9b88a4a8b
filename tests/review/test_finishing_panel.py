"""The review app's finishing panel: brand, music, loudness and captions previewed on the
animatic before the GPU render; only finishing runs."""

import time

import pytest
import yaml
from PIL import Image
from support import EXAMPLES, write_script

from flows.video.finish.loudness import measure


def test_the_panel_starts_from_the_jobs_finishing_options(client):
    fin = client.get("/api/job").json()["finishing"]
    assert fin == {
        "brand": None,
        "music": None,
        "music_volume": -8.0,
        "loudness": "web",
        "burn_captions": "off",
        "chapters": True,
    }


def test_a_bad_finishing_value_is_one_line_and_starts_nothing(client):
    r = client.post("/api/finish", json={"version": 1, "loudness": "very loud"})
    assert r.status_code == 422
    assert "field 'loudness'" in r.json()["detail"] and "\n" not in r.json()["detail"]
    r = client.post("/api/render", json={"version": 1, "finishing": {"burn_captions": "big"}})
    assert r.status_code == 422 and "burn_captions" in r.json()["detail"]


def test_the_final_render_takes_the_panels_finishing(fake_job):
    from orchestrator.review import runs
    from orchestrator.review.job import open_job

    params = runs.flow_parameters(
        open_job("fakejob00001"), out="/o", renderer="animatic", loudness="broadcast",
        brand="/k/brand.yaml", burn_captions="words",
    )  # fmt: skip
    o = params["options"]
    assert (o["loudness"], o["brand"], o["burn_captions"]) == (
        "broadcast",
        "/k/brand.yaml",
        "words",
    )


@pytest.mark.slow
def test_finishing_preview_renders_no_segment_and_serves_the_result(fresh_home, tmp_path):
    from fastapi.testclient import TestClient

    from orchestrator.review.app import create_app
    from orchestrator.review.job import open_job
    from orchestrator.studio import Studio

    script = write_script(
        tmp_path, "# Hello\nHello there, this is a short preview.", avatar=str(EXAMPLES / "presenter.png"),
        voice="piper", resolution="256x144",
    )  # fmt: skip
    job = Studio().produce(script, tmp_path / "out")
    own_video = job.outputs["video"].read_bytes()
    Image.new("RGBA", (64, 32), (255, 0, 0, 255)).save(tmp_path / "logo.png")
    (tmp_path / "brand.yaml").write_text(yaml.safe_dump({"logo": "logo.png"}))
    client = TestClient(create_app(open_job(str(job.out_dir))), base_url="http://127.0.0.1")
    body = {
        "version": 1,
        "brand": str(tmp_path / "brand.yaml"),
        "music": str(EXAMPLES / "finishing" / "music.ogg"),
        "loudness": "broadcast",
        "burn_captions": "words",
    }
    run = client.post("/api/finish", json=body).json()
    deadline = time.time() + 300
    while run["state"] == "running" and time.time() < deadline:
        time.sleep(0.5)
        run = client.get(f"/api/runs/{run['id']}").json()
    assert run["state"] == "done", run["error"]
    assert run["kind"] == "finish" and run["result"]["segments_rendered"] == 0
    fin = run["result"]["finishing"]
    assert abs(fin["loudness"]["integrated_lufs"] + 23) <= 1.0 and fin["music"]["duck_db"] == 15
    video = client.get("/media/finish-preview/video.mp4")
    assert video.status_code == 200 and len(video.content) > 10_000
    assert abs(measure(job.out_dir / "finish-preview" / "video.mp4").integrated + 23) <= 1.0
    assert client.get("/media/finish-preview/poster.png").status_code == 200
    # the job's own video is left as it was
    assert (job.out_dir / "video.mp4").read_bytes() == own_video
