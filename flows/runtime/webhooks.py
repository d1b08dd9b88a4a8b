"""Completion callbacks: an HMAC-signed JSON POST when a job or a batch finishes or fails.

The receiver checks `X-AvatarFlow-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body
with the shared secret from `AVATAR_FLOW_WEBHOOK_SECRET`. The body carries ids, status, paths
and a timestamp (for replay checks) — never the secret or any other credential. Deliveries are
retried with exponential back-off on connection errors, 408, 429 and 5xx; other 4xx answers
are final. A failed delivery is logged and never fails the job it reports on.
"""

import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("avatar_flow.webhooks")

SECRET_ENV = "AVATAR_FLOW_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-AvatarFlow-Signature"
EVENT_HEADER = "X-AvatarFlow-Event"
DELIVERY_HEADER = "X-AvatarFlow-Delivery"
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def sign(body: bytes, secret: str) -> str:
    """The signature header value for a raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """Constant-time check of a received signature header (what a receiver runs)."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def _where(url: str) -> str:
    """Scheme, host and path for logs: query strings may carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def deliver(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str | None = None,
    attempts: int = 5,
    backoff: float = 0.5,
    max_delay: float = 30.0,
    timeout: float = 10.0,
) -> bool:
    """POST `payload`; True once a 2xx answer arrives, False after the last attempt."""
    import httpx

    secret = secret if secret is not None else os.environ.get(SECRET_ENV)
    body = encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "avatar-flow-webhook/1",
        EVENT_HEADER: str(payload.get("event", "")),
        DELIVERY_HEADER: uuid.uuid4().hex,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    else:
        log.warning("%s is not set: webhook to %s is sent unsigned", SECRET_ENV, _where(url))
    for attempt in range(1, attempts + 1):
        reason = ""
        try:
            resp = httpx.post(url, content=body, headers=headers, timeout=timeout)
            if 200 <= resp.status_code < 300:
                return True
            reason = f"HTTP {resp.status_code}"
            if resp.status_code not in RETRY_STATUS:
                break
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        if attempt < attempts:
            delay = min(backoff * 2 ** (attempt - 1), max_delay)
            log.info("webhook %s: %s, retry %d in %.1f s", _where(url), reason, attempt, delay)
            time.sleep(delay)
    log.warning("webhook %s not delivered: %s", _where(url), reason)
    return False


def now() -> str:
    return datetime.now(UTC).isoformat()


# --- Prefect flow hooks for produce-video ---------------------------------------------------


def _job_for_run(flow_run_id: str) -> dict[str, Any]:
    """The job row a flow run wrote (status, error, outputs), as plain values."""
    try:
        from sqlmodel import col, select

        from flows.runtime.settings import get_settings
        from storage import Job, session_scope

        with session_scope(get_settings().db_url) as s:
            job = s.exec(
                select(Job)
                .where(Job.flow_run_id == flow_run_id)
                .order_by(col(Job.updated_at).desc())
            ).first()
            if job is None:
                return {}
            return {
                "job_id": job.id,
                "status": job.status,
                "error": job.error,
                "out_dir": job.out_dir,
                "duration": job.duration,
                "gpu_seconds": job.gpu_seconds,
            }
    except Exception:  # the callback must not fail because the database is gone
        return {}


def _job_payload(flow_run: Any, state: Any, event: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event": event,
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "finished_at": now(),
        "script": (flow_run.parameters or {}).get("script"),
    }
    payload.update(_job_for_run(str(flow_run.id)))
    if event == "job.completed":
        try:
            report = state.result(raise_on_failure=False)
        except Exception:
            report = None
        if isinstance(report, dict):
            payload.update(
                {
                    k: report.get(k)
                    for k in (
                        "job_id",
                        "out_dir",
                        "outputs",
                        "sha256",
                        "segments",
                        "duration",
                        "gpu_seconds",
                        "gpu_seconds_per_output_second",
                    )
                    if k in report
                }
            )
        payload["status"] = "done"
    else:
        payload["status"] = "failed"
        payload["error"] = payload.get("error") or (state.message or "")[:2000]
    return payload


def webhook_of(parameters: dict[str, Any] | None) -> str | None:
    """The job's webhook URL from a flow run's parameters (`options.webhook` of produce-video)."""
    options = (parameters or {}).get("options") or {}
    if not isinstance(options, dict):  # the JobOptions object itself (in-process parameters)
        options = {"webhook": getattr(options, "webhook", None)}
    return options.get("webhook") or (parameters or {}).get("webhook")


def _hook(event: str):
    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        url = webhook_of(flow_run.parameters)
        if url:
            deliver(url, _job_payload(flow_run, state, event))

    hook.__name__ = f"webhook_{event.replace('.', '_')}"
    return hook


on_job_completed = _hook("job.completed")
on_job_failed = _hook("job.failed")
