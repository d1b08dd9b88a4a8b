"""What each LLM endpoint accepts, remembered in the database (`llmendpoint` table).

The planners' `CapabilityStore` protocol, implemented with storage: the answer format an
endpoint (base URL without credentials + model) accepted, whether image parts arrive, and
the request parameters it refused. Every worker sharing the database then starts where the
first one ended instead of repeating refused or truncated requests (minutes each on a CPU
server). `avatar-flow llm reset` forgets entries.
"""

from sqlmodel import col, delete, select

from planners import EndpointCapabilities, endpoint_id
from storage import session_scope, utcnow
from storage.models import LLMEndpoint


class DatabaseCapabilityStore:
    """planners.CapabilityStore backed by the `llmendpoint` table."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def load(self, endpoint: str, model: str) -> EndpointCapabilities | None:
        with session_scope(self.db_url) as s:
            row = s.exec(
                select(LLMEndpoint).where(
                    LLMEndpoint.base_url == endpoint, LLMEndpoint.model == model
                )
            ).first()
            if row is None:
                return None
            data = {
                **(row.data or {}),
                "response_format": row.response_format,
                "images": row.images,
            }
        try:
            return EndpointCapabilities.model_validate(data)
        except ValueError:  # written by another version: negotiate again
            return None

    def save(self, endpoint: str, model: str, caps: EndpointCapabilities) -> None:
        extra = caps.model_dump(mode="json", exclude={"response_format", "images"})
        with session_scope(self.db_url) as s:
            row = s.exec(
                select(LLMEndpoint).where(
                    LLMEndpoint.base_url == endpoint, LLMEndpoint.model == model
                )
            ).first()
            row = row or LLMEndpoint(base_url=endpoint, model=model)
            row.response_format = caps.response_format
            row.images = caps.images
            row.data = extra
            row.updated_at = utcnow()
            s.add(row)

    def reset(self, endpoint: str | None = None, model: str | None = None) -> int:
        stmt = delete(LLMEndpoint)
        if endpoint is not None:
            stmt = stmt.where(col(LLMEndpoint.base_url) == endpoint_id(endpoint))
        if model is not None:
            stmt = stmt.where(col(LLMEndpoint.model) == model)
        with session_scope(self.db_url) as s:
            return s.exec(stmt).rowcount  # type: ignore[call-overload]

    def entries(self) -> list[LLMEndpoint]:
        """Every remembered endpoint (for `avatar-flow llm list`)."""
        with session_scope(self.db_url) as s:
            return list(s.exec(select(LLMEndpoint).order_by(col(LLMEndpoint.base_url))).all())
