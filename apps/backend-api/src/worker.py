"""Lambda entry point of the worker (handler `worker.lambda_handler`), fed by the SQS worker queue.

The event source mapping must enable ReportBatchItemFailures, or the returned failures are ignored and a
single bad record makes SQS retry the whole batch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app import db
from app.documents import process_batch
from app.logs import configure_logging

configure_logging()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ValueError("worker.lambda_handler expects an SQS event with a 'Records' list")
    return process_batch(records, sessions_provider=db.session_factory, today=datetime.now(UTC).date())
