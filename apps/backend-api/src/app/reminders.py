"""Renewal-reminder campaign: pick licenses expiring within the goal's window and queue one worker
message ("remind") per license. Licenses flagged exclude_from_calculations are never selected."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app import db, settings
from app.models import License
from goals_common import RenewalGoal

log = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10  # SendMessageBatch accepts at most 10 entries


@dataclass(frozen=True, kw_only=True)
class SendResult:
    sent: int
    failed: int


class ReminderSender(Protocol):
    def send(self, messages: Sequence[dict[str, Any]]) -> SendResult: ...


class SqsReminderSender:
    """Sends messages to the worker queue with SendMessageBatch. The client is injected (tests use moto)."""

    def __init__(self, queue_url: str, client: Any) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, messages: Sequence[dict[str, Any]]) -> SendResult:
        sent = failed = 0
        for start in range(0, len(messages), SQS_BATCH_LIMIT):
            chunk = messages[start : start + SQS_BATCH_LIMIT]
            response = self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "MessageBody": json.dumps(message, sort_keys=True)}
                    for index, message in enumerate(chunk)
                ],
            )
            sent += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                failed += 1
                log.error("reminder not queued: %s %s", failure.get("Code"), failure.get("Message"))
        return SendResult(sent=sent, failed=failed)


def sqs_sender_from_settings() -> SqsReminderSender:
    queue_url = settings.env(settings.WORKER_QUEUE_URL_ENV)
    if queue_url is None:
        raise settings.ConfigurationError(
            f"{settings.WORKER_QUEUE_URL_ENV} is not set: the campaign scheduler needs the worker queue's URL"
        )
    import boto3  # only when there is something to send; see app.settings for why boto3 is imported lazily

    return SqsReminderSender(queue_url, boto3.client("sqs"))


def select_due_licenses(session: Session, *, today: date, goal: RenewalGoal) -> list[License]:
    """Licenses not yet expired whose expiration falls within the goal's window, soonest first."""
    query = (
        select(License)
        .where(License.expiration_date.is_not(None))
        .where(License.expiration_date >= today)
        .where(License.expiration_date <= goal.window_end(today))
        .where(License.exclude_from_calculations.is_(False))
        .order_by(License.expiration_date, License.id)
    )
    return list(session.scalars(query))


def reminder_message(license_: License, *, today: date, goal: RenewalGoal) -> dict[str, Any]:
    assert license_.expiration_date is not None  # guaranteed by select_due_licenses
    return {
        "action": "remind",
        "license_id": license_.id,
        "provider_id": license_.provider_id,
        "expiration_date": license_.expiration_date.isoformat(),
        "days_left": (license_.expiration_date - today).days,
        "goal": goal.as_dict(),
    }


def run_campaign(
    *,
    today: date,
    goal: RenewalGoal,
    sessions: sessionmaker[Session] | None,
    sender_factory: Callable[[], ReminderSender],
) -> dict[str, Any]:
    """Select and enqueue; returns a summary (also logged by the handler)."""
    base: dict[str, Any] = {"as_of": today.isoformat(), "days_before_expiry": goal.days_before_expiry}
    if sessions is None:
        reason = str(db.DatabaseNotConfigured())
        return {**base, "status": "skipped", "reason": reason, "selected": 0, "enqueued": 0, "failed": 0}
    # Resolve the queue first: a missing WORKER_QUEUE_URL is a deployment error even on a quiet day.
    sender = sender_factory()
    with sessions() as session:
        due = select_due_licenses(session, today=today, goal=goal)
        messages = [reminder_message(license_, today=today, goal=goal) for license_ in due]
    result = sender.send(messages) if messages else SendResult(sent=0, failed=0)
    return {
        **base,
        "status": "ok" if result.failed == 0 else "partial",
        "window_end": goal.window_end(today).isoformat(),
        "selected": len(messages),
        "enqueued": result.sent,
        "failed": result.failed,
    }
