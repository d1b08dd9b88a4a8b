"""Finishing in the pipeline: templates from the CLI, the SDK and batch rows; finishing as its
own cached step (changing it renders no segment); the measured loudness on the job record."""

import time

import pytest
import yaml
from PIL import Image
from support import EXAMPLES, write_script
from typer.testing import CliRunner

from flows.runtime.settings import get_settings
from flows.video.batch import prepare_rows
from flows.video.finish.chapters import read_chapters
from flows.video.finish.loudness import measure
from flows.video.media import probe
from orchestrator.cli import app
from orchestrator.studio import Studio

FRONT = {"avatar": str(EXAMPLES / "presenter.png"), "voice": "piper", "resolution": "256x144"}
BODY = "# Hello\nHi {{ name }}, welcome to {{ company }}.\n\n# Next\nSee you soon."


def _cli(tmp_path, script, *args):
    result = CliRunner().invoke(app, ["run", str(script), "--out", str(tmp_path / "o"), *args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()  # stopped before speech
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--var", "name=Ada"], "needs a value for 'company' (--var company=...)"),
        (
            ["--var", "name=Ada", "--var", "company=X", "--var", "colour=red"],
            "unknown variable 'colour'",
        ),  # fmt: skip
        (["--var", "name=", "--var", "company=X"], "variable 'name' is empty"),
        (["--var", "name"], "--var takes NAME=VALUE"),
    ],
)
def test_cli_template_errors_are_one_line_before_speech(fresh_home, tmp_path, args, fragment):
    script = write_script(tmp_path, BODY, **FRONT)
    line = _cli(tmp_path, script, *args)
    assert line.startswith("error: ") and fragment in line, line


def test_bad_brand_kit_and_music_stop_before_speech(fresh_home, tmp_path):
    script = write_script(tmp_path, "Hello there.", **FRONT)
    kit = tmp_path / "brand.yaml"
    kit.write_text(yaml.safe_dump({"logo": {"file": "missing.png"}}))
    line = _cli(tmp_path, script, "--brand", str(kit))
    assert f"{kit}: field 'logo.file': no such file" in line
    (tmp_path / "song.mp3").write_bytes(b"not audio at all" * 50)
    line = _cli(tmp_path, script, "--music", str(tmp_path / "song.mp3"))
    assert "field 'music'" in line and "not readable audio" in line


def test_batch_rows_fill_a_template_and_name_the_row(tmp_path):
    template = write_script(tmp_path, BODY, name="t.md", **FRONT)
    rows = prepare_rows(
        [{"name": "Ada", "company": "Northwind"}, {"name": "Grace", "company": "Contoso"}],
        template=str(template),
    )
    assert [r.options["variables"] for r in rows] == [
        {"company": "Northwind", "name": "Ada"},
        {"company": "Contoso", "name": "Grace"},
    ]
    assert {r.script for r in rows} == {str(template)} and len({r.id for r in rows}) == 2
    from flows.runtime.errors import InputError

    with pytest.raises(InputError, match=r"row 2: the template needs a value for '\{?company\}?'"):
        prepare_rows([{"name": "Ada", "company": "N"}, {"name": "Bo"}], template=str(template))
    with pytest.raises(InputError, match=r"row 1: variable 'name' is empty"):
        prepare_rows([{"name": " ", "company": "N"}], template=str(template))


@pytest.mark.slow
def test_changing_finishing_renders_no_segment(fresh_home, tmp_path):
    script = write_script(tmp_path, BODY, **FRONT)
    studio = Studio()
    first = studio.produce(script, tmp_path / "a", variables={"name": "Ada", "company": "Acme"})
    assert first.segments_rendered == first.segments >= 1
    fin = first.report["finishing"]
    assert abs(fin["loudness"]["integrated_lufs"] + 16) <= 1.0
    assert fin["template"]["values"] == {"company": "Acme", "name": "Ada"}
    assert [c.title for c in read_chapters(first.outputs["video"])] == ["Hello", "Next"]

    Image.new("RGBA", (64, 32), (255, 0, 0, 255)).save(tmp_path / "logo.png")
    (tmp_path / "brand.yaml").write_text(
        yaml.safe_dump(
            {
                "logo": {"file": "logo.png", "position": "bottom-left", "opacity": 1.0},
                "lower_third": {"name": "Ada", "role": "Host"},
            }
        )  # fmt: skip
    )
    music = EXAMPLES / "finishing" / "music.ogg"
    second = studio.produce(
        script,
        tmp_path / "b",
        variables={"name": "Ada", "company": "Acme"},
        brand=tmp_path / "brand.yaml",
        music=music,
        loudness="broadcast",
        burn_captions="words",
    )
    assert second.segments_rendered == 0 and second.segments == first.segments
    fin2 = second.report["finishing"]
    assert fin2["cached"] is False and fin2["music"]["file"] == "music.ogg"
    loud = measure(second.outputs["video"])
    assert abs(loud.integrated + 23) <= 1.0 and loud.true_peak <= -1.0
    info = probe(second.outputs["video"])
    assert (info.width, info.height) == (256, 144)
    # the job record keeps the measured loudness and the template's values
    from storage import Job, session_scope

    with session_scope(get_settings().db_url) as s:
        job = s.get(Job, second.job_id)
        recorded = job.settings["finishing"]
    assert recorded["loudness"]["integrated_lufs"] == fin2["loudness"]["integrated_lufs"]
    assert recorded["template"]["values"]["company"] == "Acme"
    # the same finishing again: the finishing step itself is served from its cache
    third = studio.produce(
        script, tmp_path / "b", variables={"name": "Ada", "company": "Acme"},
        brand=tmp_path / "brand.yaml", music=music, loudness="broadcast", burn_captions="words",
    )  # fmt: skip
    assert third.segments_rendered == 0 and third.report["finishing"]["cached"] is True


ROWS = 20


@pytest.mark.slow
def test_template_batch_of_20_rows_makes_20_videos_with_their_values(fresh_home, tmp_path):
    template = write_script(tmp_path, "Hi {{ name }}, welcome to {{ company }}.", name="t.md",
                            **FRONT)  # fmt: skip
    names = ["Ada", "Grace", "Linus", "Alan", "Barbara", "Ken", "Margaret", "Dennis", "Frances",
             "John", "Radia", "Tim", "Hedy", "Edsger", "Donald", "Guido", "Anita", "Bjarne",
             "Sophie", "Niklaus"]  # fmt: skip
    companies = [f"Company{chr(65 + i)}" for i in range(ROWS)]
    rows = [
        {"id": f"r{i}", "name": n, "company": c} for i, (n, c) in enumerate(zip(names, companies))
    ]
    t0 = time.perf_counter()
    results = Studio().produce_batch(rows, template=template, out_root=tmp_path / "batch")
    seconds = time.perf_counter() - t0
    assert [r.ok for r in results] == [True] * ROWS, [r.error for r in results if not r.ok]
    assert len({r.job_id for r in results}) == ROWS  # each filled script is its own job
    for r, name, company in zip(results, names, companies):
        srt = r.outputs["captions_srt"].read_text()
        assert name.lower() in srt.lower() and company.lower() in srt.lower(), (name, srt)
        assert r.outputs["video"].is_file()
    print(f"{ROWS} videos in {seconds:.0f} s: {seconds / ROWS:.1f} s per video")


def test_plan_command_takes_the_same_variables(fresh_home, tmp_path):
    script = write_script(tmp_path, BODY, **FRONT)
    result = CliRunner().invoke(app, ["plan", str(script), "--var", "name=Ada"])
    assert result.exit_code == 2 and "needs a value for 'company'" in result.stderr
