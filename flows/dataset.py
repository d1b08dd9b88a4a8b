"""The module path `flows.dataset`, kept for Prefect deployments registered before the flows were
regrouped (their entrypoint names it); `avatar-flow deploy` re-registers them with the new
path, `flows.training.dataset`. Nothing in the code imports it."""

from flows.training.dataset import build_dataset  # noqa: F401
