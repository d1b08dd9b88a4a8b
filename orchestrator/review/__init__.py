"""The local review app (`avatar-flow review`): watch a job's preview, edit its plan on the
timeline, save plan versions, re-render only the segments an edit touches, then start the
final render. FastAPI (already installed with Prefect) serves one job and a static page in
plain JavaScript; nothing is fetched from the network."""

from orchestrator.review.serve import bind_settings, review, serve

__all__ = ["bind_settings", "review", "serve"]
