"""The module path `flows.produce`, kept for Prefect deployments registered before the flows were
regrouped (their entrypoint names it); `avatar-flow deploy` re-registers them with the new
path, `flows.video.produce`. Nothing in the code imports it."""

from flows.video.produce import plan_script, produce_video  # noqa: F401
