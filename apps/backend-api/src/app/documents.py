"""Document-processing tasks from the worker queue, and SQS partial-batch handling.

A message body is JSON: {"action": ..., "document_id": ..., "license_id": ..., "goal": {...}}.
  * extract - a document arrived: validate and record it (needs document_id; no database).
  * verify  - check a document against its license's expiry (needs document_id, license_id, database).
  * remind  - a renewal reminder queued by the campaign scheduler (needs license_id, database).
The document pipeline itself (S3 fetch, OCR) lives outside this deployment project; these tasks exercise
what a deployment can break: imports, configuration, database access and the batch contract.

A record that fails (bad message, missing license, database down) is reported in batchItemFailures, so
SQS retries only that record and, after the queue's maxReceiveCount, moves it to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app import db
from app.models import License
from goals_common import DEFAULT_GOAL, GoalValidationError, RenewalGoal, validate_goal

log = logging.getLogger(__name__)

# action -> fields it needs
ACTIONS: dict[str, tuple[str, ...]] = {
    "extract": ("document_id",),
    "verify": ("document_id", "license_id"),
    "remind": ("license_id",),
}

SessionsProvider = Callable[[], sessionmaker[Session] | None]


class TaskError(Exception):
    """This record cannot be processed (now); the message says why."""


@dataclass(frozen=True, kw_only=True)
class DocumentTask:
    message_id: str
    action: str
    document_id: str | None = None
    license_id: int | None = None
    goal: RenewalGoal = DEFAULT_GOAL


@dataclass(frozen=True, kw_only=True)
class TaskOutcome:
    message_id: str
    action: str
    result: str


def parse_task(record: Mapping[str, Any]) -> DocumentTask:
    message_id = str(record.get("messageId", ""))
    try:
        body = json.loads(record.get("body") or "")
    except ValueError:
        raise TaskError("body is not JSON") from None
    if not isinstance(body, dict):
        raise TaskError("body must be a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise TaskError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    document_id = body.get("document_id")
    if document_id is not None and (not isinstance(document_id, str) or not document_id.strip()):
        raise TaskError("document_id must be a non-empty string")
    license_id = body.get("license_id")
    if license_id is not None and (isinstance(license_id, bool) or not isinstance(license_id, int)):
        raise TaskError(f"license_id must be an integer, got {license_id!r}")
    present = {"document_id": document_id, "license_id": license_id}
    missing = [name for name in ACTIONS[action] if present[name] is None]
    if missing:
        raise TaskError(f"action {action!r} needs {', '.join(missing)}")
    try:
        goal = validate_goal(body.get("goal"))
    except GoalValidationError as exc:
        raise TaskError(str(exc)) from None
    return DocumentTask(
        message_id=message_id, action=action, document_id=document_id, license_id=license_id, goal=goal
    )


def _load_license(task: DocumentTask, sessions_provider: SessionsProvider) -> License:
    sessions = sessions_provider()
    if sessions is None:
        raise TaskError(str(db.DatabaseNotConfigured()))
    with sessions() as session:
        found = session.get(License, task.license_id)
    if found is None:
        raise TaskError(f"license {task.license_id} does not exist")
    return found


def renewal_status(license_: License, goal: RenewalGoal, today: date) -> str:
    if license_.expiration_date is None:
        return "no_expiration_date"
    if license_.expiration_date < today:
        return "expired"
    if license_.expiration_date <= goal.window_end(today):
        return "expiring_soon"
    return "current"


def handle_task(task: DocumentTask, *, sessions_provider: SessionsProvider, today: date) -> TaskOutcome:
    if task.action == "extract":
        result = "extracted"
    elif task.action == "verify":
        result = renewal_status(_load_license(task, sessions_provider), task.goal, today)
    else:  # remind
        license_ = _load_license(task, sessions_provider)
        if license_.exclude_from_calculations:
            result = "skipped_excluded"
        else:
            # Delivery (email/SMS) is the notification service's job; the worker records the decision.
            result = f"reminded:{renewal_status(license_, task.goal, today)}"
    return TaskOutcome(message_id=task.message_id, action=task.action, result=result)


def process_batch(
    records: Iterable[Mapping[str, Any]], *, sessions_provider: SessionsProvider, today: date
) -> dict[str, list[dict[str, str]]]:
    """The SQS partial-batch response: the messageId of every record that failed."""
    failures: list[dict[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            outcome = handle_task(parse_task(record), sessions_provider=sessions_provider, today=today)
        except TaskError as exc:
            log.warning("record %s failed: %s", message_id, exc)
            failures.append({"itemIdentifier": message_id})
        except Exception:
            # Database or configuration trouble: retry this record, keep processing the others.
            log.exception("record %s failed unexpectedly", message_id)
            failures.append({"itemIdentifier": message_id})
        else:
            log.info("record %s: %s -> %s", message_id, outcome.action, outcome.result)
    return {"batchItemFailures": failures}
