# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""worker.lambda_handler: SQS document tasks with partial-batch failures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest


def record(message_id: str, body: object) -> dict[str, object]:
    raw = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": raw,
        "eventSource": "aws:sqs",
    }


def add_license(*, expires: date | None, excluded: bool = False) -> int:
    from app import db
    from app.models import License

    with db.require_session_factory()() as session:
        license_ = License(
            provider_id=1,
            state="NY",
            license_number=f"N-{expires}-{excluded}",
            expiration_date=expires,
            exclude_from_calculations=excluded,
        )
        session.add(license_)
        session.commit()
        return license_.id


def test_only_failed_records_are_reported(migrated_db):
    import worker

    today = datetime.now(UTC).date()
    soon = add_license(expires=today + timedelta(days=10))
    event = {
        "Records": [
            record("ok-extract", {"action": "extract", "document_id": "doc-1"}),
            record("bad-json", "{nope"),
            record("bad-action", {"action": "shred", "document_id": "doc-2"}),
            record("no-license-id", {"action": "verify", "document_id": "doc-3"}),
            record("unknown-license", {"action": "verify", "document_id": "doc-4", "license_id": 999}),
            record("ok-verify", {"action": "verify", "document_id": "doc-5", "license_id": soon}),
            record("bad-goal", {"action": "remind", "license_id": soon, "goal": {"days_before_expiry": 0}}),
            record("ok-remind", {"action": "remind", "license_id": soon}),
            record("bool-id", {"action": "remind", "license_id": True}),
        ]
    }
    result = worker.lambda_handler(event, None)
    assert result == {
        "batchItemFailures": [
            {"itemIdentifier": "bad-json"},
            {"itemIdentifier": "bad-action"},
            {"itemIdentifier": "no-license-id"},
            {"itemIdentifier": "unknown-license"},
            {"itemIdentifier": "bad-goal"},
            {"itemIdentifier": "bool-id"},
        ]
    }


def test_all_good_batch_reports_no_failures():
    import worker

    event = {"Records": [record(str(i), {"action": "extract", "document_id": f"d{i}"}) for i in range(3)]}
    assert worker.lambda_handler(event, None) == {"batchItemFailures": []}


def test_database_tasks_fail_without_a_database_and_others_succeed():
    import worker

    event = {
        "Records": [
            record("needs-db", {"action": "verify", "document_id": "d", "license_id": 1}),
            record("no-db-needed", {"action": "extract", "document_id": "d"}),
        ]
    }
    assert worker.lambda_handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "needs-db"}]}


def test_database_outage_fails_the_record_not_the_batch(tmp_path, monkeypatch):
    import worker

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    event = {
        "Records": [
            record("db", {"action": "remind", "license_id": 1}),
            record("doc", {"action": "extract", "document_id": "d"}),
        ]
    }
    assert worker.lambda_handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "db"}]}


@pytest.mark.parametrize(
    ("days", "excluded", "goal", "expected"),
    [
        (-1, False, None, "reminded:expired"),
        (30, False, None, "reminded:expiring_soon"),
        (90, False, None, "reminded:current"),
        (90, False, {"days_before_expiry": 120}, "reminded:expiring_soon"),
        (30, True, None, "skipped_excluded"),
    ],
)
def test_remind_outcomes(migrated_db, days, excluded, goal, expected):
    from app import db
    from app.documents import handle_task, parse_task

    today = date(2025, 3, 1)
    license_id = add_license(expires=today + timedelta(days=days), excluded=excluded)
    body = {"action": "remind", "license_id": license_id, **({"goal": goal} if goal else {})}
    outcome = handle_task(parse_task(record("m", body)), sessions_provider=db.session_factory, today=today)
    assert outcome.result == expected


def test_non_sqs_event_is_a_clear_error():
    import worker

    with pytest.raises(ValueError, match="Records"):
        worker.lambda_handler({"detail-type": "Scheduled Event"}, None)
