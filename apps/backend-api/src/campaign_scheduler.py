"""Lambda entry point of the campaign scheduler (handler `campaign_scheduler.lambda_handler`), invoked by an
EventBridge schedule. Queues renewal reminders for licenses expiring soon onto WORKER_QUEUE_URL.

The event's `time` (the scheduled time, stable across EventBridge retries) is the campaign date. An
optional `detail.goal` ({"days_before_expiry": N}) overrides the default window; a malformed one raises
GoalValidationError, failing the invocation loudly rather than reminding the wrong people.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

from app import db
from app.logs import configure_logging
from app.reminders import run_campaign, sqs_sender_from_settings
from goals_common import GoalValidationError, validate_goal

configure_logging()
log = logging.getLogger(__name__)


def campaign_date(event: dict[str, Any]) -> date:
    raw = event.get("time")
    if isinstance(raw, str) and raw:
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC).date()
        except ValueError:
            log.warning("event time %r is not ISO 8601; using today's date", raw)
    return datetime.now(UTC).date()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise ValueError("campaign_scheduler.lambda_handler expects an EventBridge event (a JSON object)")
    detail = event.get("detail") or {}
    if not isinstance(detail, dict):
        raise GoalValidationError("event detail must be an object")
    goal = validate_goal(detail.get("goal"))
    summary = run_campaign(
        today=campaign_date(event),
        goal=goal,
        sessions=db.session_factory(),
        sender_factory=sqs_sender_from_settings,
    )
    log.info("campaign summary %s", json.dumps(summary, sort_keys=True))
    return summary
