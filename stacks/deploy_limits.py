"""CloudFormation's per-stack limits, checked at synth so a catalog that cannot deploy says so in one line.

A nested stack counts on its own. CDK itself stops at 500 resources, but with a stack trace from inside
jsii; this module counts first and names the stack, the count, the limit and what to do. Template size and
the counts of outputs and parameters are known only once the templates are written (`check_templates`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aws_cdk import CfnResource, Stack
from constructs import Construct

from stacks.function_groups import GROUP_SIZE

MAX_RESOURCES = 500
MAX_TEMPLATE_BYTES = 1_000_000  # a template CloudFormation reads from S3, as `cdk deploy` uploads it
MAX_OUTPUTS = 200
MAX_PARAMETERS = 200

ADVICE = (
    f"functions beyond the first {GROUP_SIZE} go to nested stacks (stacks/function_groups.py), but the main "
    "stack keeps the API with every routed prefix: give functions fewer path prefixes, or route them through "
    "one catch-all function"
)


class DeployLimitError(ValueError):
    """A stack CloudFormation would refuse; the message names it, the count and the limit."""


def _name(stack: Stack) -> str:
    return stack.node.path if stack.nested_stack_parent is not None else stack.stack_name


def check_resource_counts(scope: Construct) -> None:
    """Before synth: every stack under `scope` (nested ones on their own) within MAX_RESOURCES."""
    counts: dict[Stack, int] = {}
    for node in scope.node.find_all():
        if isinstance(node, CfnResource):
            stack = Stack.of(node)
            counts[stack] = counts.get(stack, 0) + 1
    over = [(stack, n) for stack, n in counts.items() if n > MAX_RESOURCES]
    if over:
        raise DeployLimitError(
            "; ".join(
                f"stack {_name(stack)} would have {n} resources, more than CloudFormation's limit of "
                f"{MAX_RESOURCES}"
                for stack, n in over
            )
            + f" ({ADVICE})"
        )


def template_problems(name: str, template: Mapping[str, Any], size: int) -> list[str]:
    problems = []
    for what, found, limit in (
        ("resources", len(template.get("Resources", {})), MAX_RESOURCES),
        ("outputs", len(template.get("Outputs", {})), MAX_OUTPUTS),
        ("parameters", len(template.get("Parameters", {})), MAX_PARAMETERS),
        ("bytes", size, MAX_TEMPLATE_BYTES),
    ):
        if found > limit:
            problems.append(
                f"template {name} has {found} {what}, more than CloudFormation's limit of {limit}"
            )
    return problems


def check_templates(paths: Iterable[Path]) -> None:
    """After synth: every written template (nested ones too) within CloudFormation's limits."""
    problems = []
    for path in paths:
        text = path.read_text()
        problems += template_problems(path.name, json.loads(text), len(text.encode()))
    if problems:
        raise DeployLimitError("; ".join(problems) + f" ({ADVICE})")
