# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""campaign_scheduler.lambda_handler: licenses expiring soon become reminder messages on the worker queue.

SQS is moto's (no AWS account here); the sender's SendMessageBatch calls are the real boto3 ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

import boto3
import pytest
from moto import mock_aws

TODAY = date(2025, 3, 1)


def scheduled_event(detail: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": f"{TODAY.isoformat()}T06:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/campaign"],
        "detail": detail or {},
    }


@pytest.fixture
def queue_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with mock_aws():
        url = boto3.client("sqs").create_queue(QueueName="worker")["QueueUrl"]
        monkeypatch.setenv("WORKER_QUEUE_URL", url)
        yield url


def drain(url: str) -> list[dict[str, object]]:
    sqs = boto3.client("sqs")
    bodies: list[dict[str, object]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def add_licenses(specs: list[tuple[str, int | None, bool]]) -> dict[str, int]:
    from app import db
    from app.models import License

    ids = {}
    with db.require_session_factory()() as session:
        for number, days, excluded in specs:
            license_ = License(
                provider_id=3,
                state="WA",
                license_number=number,
                expiration_date=None if days is None else TODAY + timedelta(days=days),
                exclude_from_calculations=excluded,
            )
            session.add(license_)
            session.flush()
            ids[number] = license_.id
        session.commit()
    return ids


def test_without_database_it_reports_skipped_and_does_not_crash():
    import campaign_scheduler

    summary = campaign_scheduler.lambda_handler(scheduled_event(), None)
    assert summary["status"] == "skipped"
    assert "no database configured" in summary["reason"] and "DATABASE_URL" in summary["reason"]
    assert (summary["selected"], summary["enqueued"]) == (0, 0)


def test_selects_licenses_expiring_soon_and_skips_excluded(migrated_db, queue_url):
    import campaign_scheduler

    ids = add_licenses(
        [
            ("due-today", 0, False),
            ("due-30", 30, False),
            ("due-60", 60, False),  # the default goal's window is inclusive
            ("excluded", 10, True),
            ("expired", -1, False),
            ("later", 61, False),
            ("no-date", None, False),
        ]
    )
    summary = campaign_scheduler.lambda_handler(scheduled_event(), None)
    assert summary == {
        "as_of": "2025-03-01",
        "days_before_expiry": 60,
        "window_end": "2025-04-30",
        "status": "ok",
        "selected": 3,
        "enqueued": 3,
        "failed": 0,
    }
    messages = sorted(drain(queue_url), key=lambda m: str(m["expiration_date"]))
    assert [m["license_id"] for m in messages] == [ids["due-today"], ids["due-30"], ids["due-60"]]
    assert messages[1] == {
        "action": "remind",
        "license_id": ids["due-30"],
        "provider_id": 3,
        "expiration_date": "2025-03-31",
        "days_left": 30,
        "goal": {"kind": "license_renewal", "days_before_expiry": 60},
    }


def test_queued_reminders_are_valid_worker_messages(migrated_db, queue_url):
    import campaign_scheduler
    import worker

    add_licenses([("due", 5, False)])
    campaign_scheduler.lambda_handler(scheduled_event(), None)
    records = [{"messageId": "m1", "body": json.dumps(body)} for body in drain(queue_url)]
    assert len(records) == 1
    assert worker.lambda_handler({"Records": records}, None) == {"batchItemFailures": []}


def test_more_than_ten_reminders_are_sent_in_batches(migrated_db, queue_url):
    import campaign_scheduler

    add_licenses([(f"n{i}", i, False) for i in range(23)])
    summary = campaign_scheduler.lambda_handler(scheduled_event(), None)
    assert (summary["selected"], summary["enqueued"], summary["failed"]) == (23, 23, 0)
    assert len(drain(queue_url)) == 23


def test_goal_in_event_detail_widens_the_window(migrated_db, queue_url):
    import campaign_scheduler

    add_licenses([("in-90", 90, False)])
    summary = campaign_scheduler.lambda_handler(scheduled_event({"goal": {"days_before_expiry": 120}}), None)
    assert (summary["selected"], summary["days_before_expiry"]) == (1, 120)


def test_invalid_goal_fails_loudly():
    import campaign_scheduler
    from goals_common import GoalValidationError

    with pytest.raises(GoalValidationError, match="days_before_expiry"):
        campaign_scheduler.lambda_handler(scheduled_event({"goal": {"days_before_expiry": "soon"}}), None)


def test_missing_queue_url_is_a_configuration_error(migrated_db):
    import campaign_scheduler
    from app.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match="WORKER_QUEUE_URL"):
        campaign_scheduler.lambda_handler(scheduled_event(), None)


def test_partially_failed_send_is_reported():
    from app.reminders import SqsReminderSender

    class FlakySqs:
        def send_message_batch(self, QueueUrl, Entries):  # boto3's argument names
            return {
                "Successful": [{"Id": e["Id"]} for e in Entries[1:]],
                "Failed": [{"Id": Entries[0]["Id"], "Code": "InternalError", "Message": "boom"}],
            }

    result = SqsReminderSender("https://sqs.example/q", FlakySqs()).send([{"a": 1}, {"a": 2}])
    assert (result.sent, result.failed) == (1, 1)
