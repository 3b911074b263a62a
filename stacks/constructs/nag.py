"""Scanner findings: the one way a checkov check is skipped on a resource (`checkov_skip`, with its
reason)."""

from __future__ import annotations

import re

from aws_cdk import CfnResource
from constructs import IConstruct

_CHECKOV_ID = re.compile(r"CKV2?_[A-Z0-9]+_\d+")
# A reason says why the check does not apply here: a few words at least, not "n/a" or "ok".
_MIN_REASON_WORDS = 4


def checkov_skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Skip one checkov check on one resource, with the reason (the only way skips are written here).

    Writes `Metadata: {"checkov": {"skip": [{"id": ..., "comment": ...}]}}` on the construct's CloudFormation
    resource (the construct itself, or its default child), which checkov honours; scripts/checkov_gate/gate.py
    fails on any skip without a comment, so a hand-written metadata entry cannot slip one through.
    """
    cfn = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(cfn, CfnResource):
        raise TypeError(f"checkov_skip: {construct.node.path} has no CloudFormation resource to annotate")
    if not _CHECKOV_ID.fullmatch(check_id):
        raise ValueError(
            f"checkov_skip({cfn.node.path}): {check_id!r} is not a checkov check ID (CKV_AWS_123)"
        )
    if len(reason.split()) < _MIN_REASON_WORDS:
        raise ValueError(
            f"checkov_skip({cfn.node.path}, {check_id}): give a reason of at least {_MIN_REASON_WORDS} words "
            f"saying why the check does not apply, not {reason!r}"
        )
    existing = cfn.get_metadata("checkov") or {}
    skips = list(existing.get("skip", []))
    if any(s.get("id") == check_id for s in skips):
        raise ValueError(f"checkov_skip({cfn.node.path}): {check_id} is already skipped")
    skips.append({"id": check_id, "comment": reason})
    cfn.add_metadata("checkov", {**existing, "skip": skips})
