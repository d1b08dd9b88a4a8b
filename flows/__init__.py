"""The pipeline, grouped by what it produces:

- `flows.video`: script -> speech -> words -> plan -> segments -> render -> stitch, the job
  options contract, and the `produce-video` / `produce-batch` flows;
- `flows.training`: the dataset builder (`build-dataset`), the training flows, the checkpoint
  registry and its Hub transfer;
- `flows.evaluation`: the MLLM judge;
- `flows.runtime`: settings (read from the environment: a run started from the Prefect UI never
  passes through the CLI), errors, progress events, job records, the GPU gate, webhooks, job logs.

Importing it changes nothing (environment, import machinery): where Prefect keeps its ephemeral
database is set by the application layer (`orchestrator`, `flows.runtime.home`). The old module
paths `flows.produce`, `flows.batch`, `flows.dataset` and `flows.train` are small re-exporting
modules for deployments registered before the regrouping.
"""
