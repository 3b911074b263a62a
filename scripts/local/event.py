"""Send a function the event SQS or EventBridge would deliver, on its real bundle under the Lambda RIE.

    python -m scripts.local.event --function Worker --kind sqs [--body '{"task": "extract"}'] [--count 2]
    python -m scripts.local.event --function CampaignScheduler --kind schedule
    make local-event FUNCTION=Worker KIND=sqs|schedule [BODY=...] [ENV=staging]

Like `sam local generate-event` followed by an invoke, but from the synthesized template: the queue behind
the function's SQS event source mapping (its ARN, FIFO attributes, batch size) and the EventBridge rule
targeting it (its ARN, and the target's constant Input, which EventBridge delivers instead of the event).
The function runs with its template environment (as scripts/local/api.py does). Prints the event to stderr
with --show-event, the function's log on stderr and its response as JSON on stdout. Exit 0 when the function
answered, 1 on a function error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.local.stack import (
    DEFAULT_CACHE,
    LOCAL_ACCOUNT,
    LOCAL_REGION,
    REPO_ROOT,
    HarnessError,
    LocalStackError,
    Runtimes,
    Template,
    find_function,
    load_functions,
    override_code,
    parse_context,
    parse_env,
    referenced_ids,
    stderr_log,
    synthesize,
)

SENDER_ID = "AROAEXAMPLELOCALSENDER:local-event"


def _physical(template: Template, logical_id: str) -> str:
    """A name shaped like the one CloudFormation generates (stack-LogicalId-SUFFIX)."""
    suffix = hashlib.sha256(logical_id.encode()).hexdigest()[:12].upper()
    return f"{template.stack_name}-{logical_id}-{suffix}"[:80]


def _targets_function(template: Template, value: Any, function: str) -> bool:
    return template.function_of(value) == function


def queue_for(template: Template, function: str) -> tuple[str, dict[str, Any], int]:
    """(queue logical ID, its properties, batch size) of the function's SQS event source mapping."""
    for mid in template.of_type("AWS::Lambda::EventSourceMapping"):
        props = template.props(mid)
        if not _targets_function(template, props.get("FunctionName"), function):
            continue
        for ref in referenced_ids(props.get("EventSourceArn")):
            if template.resources.get(ref, {}).get("Type") == "AWS::SQS::Queue":
                return ref, template.props(ref), int(props.get("BatchSize", 10))
    raise LocalStackError(
        f"{template.path.name}: function {template.cdk_path(function)} has no SQS event source mapping; "
        "SQS never invokes it (choose the function the queue triggers)"
    )


def sqs_event(template: Template, function: str, bodies: Sequence[str]) -> dict[str, Any]:
    queue_id, queue, batch = queue_for(template, function)
    if len(bodies) > batch:
        raise LocalStackError(f"{len(bodies)} messages exceed the mapping's BatchSize {batch}")
    fifo = bool(queue.get("FifoQueue"))
    name = _physical(template, queue_id) + (".fifo" if fifo else "")
    arn = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}"
    now_ms = int(time.time() * 1000)
    records = []
    for index, body in enumerate(bodies):
        attributes = {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(now_ms - 50),
            "SenderId": SENDER_ID,
            "ApproximateFirstReceiveTimestamp": str(now_ms),
        }
        if fifo:
            attributes |= {
                "SequenceNumber": str(18849496460467696128 + index),
                "MessageGroupId": "local",
                "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
            }
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": base64.b64encode(secrets.token_bytes(96)).decode(),
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": LOCAL_REGION,
            }
        )
    return {"Records": records}


def schedule_event(template: Template, function: str, detail: Any) -> tuple[dict[str, Any], str | None]:
    """The scheduled event (or the target's constant Input) and a note when the rule is disabled."""
    for rid in template.of_type("AWS::Events::Rule"):
        props = template.props(rid)
        if "ScheduleExpression" not in props:
            continue
        for target in props.get("Targets") or []:
            if not _targets_function(template, target.get("Arn"), function):
                continue
            note = None if props.get("State", "ENABLED") == "ENABLED" else f"rule {rid} is {props['State']}"
            if "Input" in target:
                input_text = template.resolve(target["Input"])
                if input_text is not None:
                    return json.loads(input_text), note
            arn = f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/{_physical(template, rid)}"
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": LOCAL_ACCOUNT,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": LOCAL_REGION,
                "resources": [arn],
                "detail": detail,
            }
            return event, note
    raise LocalStackError(
        f"{template.path.name}: no scheduled EventBridge rule targets {template.cdk_path(function)}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--function", required=True, help="e.g. Worker, or a logical ID")
    parser.add_argument("--kind", required=True, choices=("sqs", "schedule"))
    parser.add_argument("--body", help="SQS message body (default {}); for schedule: the detail JSON")
    parser.add_argument("--count", type=int, default=1, help="SQS messages in the batch")
    parser.add_argument("--env", dest="environment", default="staging")
    parser.add_argument("--stack")
    parser.add_argument("--cdk-out", type=Path, default=REPO_ROOT / "cdk.out")
    parser.add_argument("--no-synth", action="store_true")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--code", action="append", default=[], metavar="FUNCTION=FOLDER")
    parser.add_argument("--set-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--show-event", action="store_true", help="print the event on stderr")
    parser.add_argument("--print-only", action="store_true", help="print the event on stdout, invoke nothing")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    return parser.parse_args(argv)


def build_event(template: Template, function: str, kind: str, body: str | None, count: int) -> dict[str, Any]:
    if kind == "sqs":
        return sqs_event(template, function, [body if body is not None else "{}"] * count)
    try:
        detail = json.loads(body) if body else {}
    except ValueError as exc:
        raise LocalStackError(f"--body for a schedule event is the detail JSON: {exc}") from exc
    event, note = schedule_event(template, function, detail)
    if note:
        stderr_log(f"[local-event] note: {note} (EventBridge would not invoke it now)")
    return event


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        context = parse_context(args.context)
        stack = args.stack or f"credmate-backend-{args.environment}"
        outdir = args.cdk_out.resolve()
        if not args.no_synth and not args.print_only:
            synthesize(outdir, context)
        template = Template(outdir / f"{stack}.template.json")
        function = find_function(template, args.function)
        event = build_event(template, function, args.kind, args.body, args.count)
        if args.print_only:
            print(json.dumps(event, indent=2))
            return 0
        functions = load_functions(template, [function], args.cache_dir.resolve())
        override_code(functions, template, args.code)
        runtimes = Runtimes(functions, extra_env=parse_env(args.set_env))
    except LocalStackError as exc:
        print(f"local-event: {exc}", file=sys.stderr)
        return 2
    if args.show_event:
        stderr_log(json.dumps(event, indent=2))
    try:
        invocation = runtimes.invoke(function, event)
    except HarnessError as exc:
        print(f"local-event: {exc}", file=sys.stderr)
        return 1
    finally:
        runtimes.stop()
    result = invocation.result
    stderr_log(
        f"[local-event] {args.kind} -> {functions[function].label}: "
        f"{'FUNCTION ERROR' if result.function_error else 'ok'} in {invocation.seconds * 1000:.0f} ms"
    )
    print(json.dumps(result.payload, indent=2, default=str))
    return 1 if result.function_error else 0


if __name__ == "__main__":
    sys.exit(main())
