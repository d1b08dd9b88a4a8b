"""The module path `flows.train`, kept for Prefect deployments registered before the flows were
regrouped (their entrypoint names it); `avatar-flow deploy` re-registers them with the new
path, `flows.training.train`. Nothing in the code imports it."""

from flows.training.train import train_both, train_distill, train_stage1, train_stage2  # noqa: F401
