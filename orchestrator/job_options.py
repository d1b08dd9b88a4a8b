"""The job options contract (`flows.video.options.JobOptions`) as typer options: one alias per
field, its help text read from the field's description. `run`, `plan` and `batch` declare their
job options with these (defaults from `flows.video.options.default`), and
`tests/flows/test_options_contract.py` checks that each command takes the contract's fields."""

from pathlib import Path
from typing import Annotated

import typer

from flows.video.options import describe

OutOpt = Annotated[Path | None, typer.Option("--out", help=describe("out"))]
RendererOpt = Annotated[str, typer.Option(help=describe("renderer"))]
PlannerOpt = Annotated[str, typer.Option(help=describe("planner"))]
VoiceOpt = Annotated[str | None, typer.Option(help=describe("voice"))]
CheckpointOpt = Annotated[Path | None, typer.Option(help=describe("checkpoint"))]
SegmentOpt = Annotated[float | None, typer.Option(help=describe("segment_seconds"))]
StepsOpt = Annotated[int | None, typer.Option(help=describe("steps"))]
ContinuityOpt = Annotated[int, typer.Option(help=describe("continuity"))]
ContinuityModeOpt = Annotated[str | None, typer.Option(help=describe("continuity_mode"))]
ColorAnchorOpt = Annotated[bool, typer.Option(help=describe("color_anchor"))]
FastOpt = Annotated[bool, typer.Option(help=describe("fast"))]
SolverOpt = Annotated[str | None, typer.Option(help=describe("solver"))]
IntervalOpt = Annotated[str | None, typer.Option(help=describe("guidance_interval"))]
StepCacheOpt = Annotated[bool, typer.Option(help=describe("step_cache"))]
ForceOpt = Annotated[bool, typer.Option(help=describe("force"))]
WebhookOpt = Annotated[str | None, typer.Option(help=describe("webhook"))]
PlanOpt = Annotated[Path | None, typer.Option("--plan", help=describe("plan"))]
ReplanOpt = Annotated[bool, typer.Option(help=describe("replan"))]
StrictOpt = Annotated[bool, typer.Option(help=describe("strict"))]
VarsOpt = Annotated[
    list[str] | None,
    typer.Option("--variables", "--var", metavar="NAME=VALUE", help=describe("variables")),
]
BrandOpt = Annotated[Path | None, typer.Option("--brand", help=describe("brand"))]
MusicOpt = Annotated[Path | None, typer.Option("--music", help=describe("music"))]
MusicVolumeOpt = Annotated[float, typer.Option(help=describe("music_volume"))]
LoudnessOpt = Annotated[str, typer.Option(help=describe("loudness"))]
BurnCaptionsOpt = Annotated[str, typer.Option(help=describe("burn_captions"))]
ChaptersOpt = Annotated[bool, typer.Option(help=describe("chapters"))]
