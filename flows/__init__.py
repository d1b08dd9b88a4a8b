"""The pipeline, grouped by what it produces:

- `flows.video`: script -> speech -> words -> plan -> segments -> render -> stitch, the job
  options contract, and the `produce-video` / `produce-batch` flows;
- `flows.training`: the dataset builder (`build-dataset`), the training flows, the checkpoint
  registry and its Hub transfer;
- `flows.evaluation`: the MLLM judge;
- `flows.runtime`: settings (read from the environment: a run started from the Prefect UI never
  passes through the CLI), errors, progress events, job records, the GPU gate, webhooks, job logs.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

# Module paths of flows that deployments registered before the regrouping still name as their
# entrypoint (`flows.produce.produce_video`). They import as the new module; `avatar-flow
# deploy` re-registers the deployments with the new paths. Nothing in the code uses them.
LEGACY_MODULES = {
    "flows.produce": "flows.video.produce",
    "flows.batch": "flows.video.batch",
    "flows.dataset": "flows.training.dataset",
    "flows.train": "flows.training.train",
}


def _configure_prefect_home() -> None:
    """Keep Prefect's ephemeral database under AVATAR_FLOW_HOME unless the user set Prefect up."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # opt in explicitly
    if "PREFECT_HOME" in os.environ or "PREFECT_API_URL" in os.environ:
        if "PREFECT_HOME" in os.environ:  # the ephemeral server cannot create its own folder
            Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
        return
    if (Path.home() / ".prefect" / "profiles.toml").is_file():
        return  # an existing Prefect profile (e.g. pointing at a server) wins
    home = Path(os.environ.get("AVATAR_FLOW_HOME") or Path.home() / ".avatar-flow")
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


class _LegacyAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module path as the module that replaced it (the same module object)."""

    def find_spec(self, name, path=None, target=None):
        if name in LEGACY_MODULES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(LEGACY_MODULES[spec.name])

    def exec_module(self, module):
        """Nothing to run: the new module is already imported."""


_configure_prefect_home()
if not any(isinstance(f, _LegacyAlias) for f in sys.meta_path):
    sys.meta_path.append(_LegacyAlias())
