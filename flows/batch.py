"""The module path `flows.batch`, kept for Prefect deployments registered before the flows were
regrouped (their entrypoint names it); `avatar-flow deploy` re-registers them with the new
path, `flows.video.batch`. Nothing in the code imports it."""

from flows.video.batch import produce_batch  # noqa: F401
