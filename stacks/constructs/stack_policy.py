"""A typed CloudFormation stack policy, built from the real logical IDs of a synthesized stack.

What a stack policy can and cannot do (read this before relying on it):

* It constrains **CloudFormation stack updates only**. During `cdk deploy` (an UpdateStack or change-set
  execution), CloudFormation refuses any resource action the policy denies, and the whole update rolls back.
* It does **not** stop anyone calling a service API directly: `aws lambda update-function-code`,
  `update-alias`, the console's "Deploy" button, `cdk deploy --hotswap` and `sam sync` all talk to Lambda,
  not to CloudFormation, so no stack policy ever sees them. Those paths are covered elsewhere
  (stacks/constructs/guardrails.py: alert, drift check, deny policy; scripts/deploy/guard.py).
* It does not cover stack deletion (termination protection does).

Policies are built from the constructs themselves (`protect`), never from hand-written IDs: the logical ID
is computed with `Stack.get_logical_id` at synth, so the policy cannot name a resource that no longer exists.
If a protected construct is renamed or moved, its logical ID changes; CloudFormation then sees "delete the
old resource, create a new one", and the policy set on the previous deploy denies that delete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aws_cdk import CfnResource, Stack, Token
from constructs import Construct

Effect = Literal["Allow", "Deny"]
UpdateAction = Literal["Update:Modify", "Update:Replace", "Update:Delete", "Update:*"]
UPDATE_ACTIONS: tuple[str, ...] = ("Update:Modify", "Update:Replace", "Update:Delete", "Update:*")
_LOGICAL_ID = re.compile(r"^[A-Za-z0-9]{1,255}$")
_RESOURCE_TYPE = re.compile(r"^[A-Za-z0-9]+::[A-Za-z0-9]+::[A-Za-z0-9:*]+$")


# Resources CDK re-creates under a new logical ID whenever their content changes (lambda current_version,
# API Gateway deployments): the previous one is deleted by design, so they can never be protected.
CONTENT_HASHED_TYPES = frozenset({"AWS::Lambda::Version", "AWS::ApiGateway::Deployment"})


class StackPolicyError(ValueError):
    """A stack policy that CloudFormation would reject, or a resource that cannot be protected."""


@dataclass(frozen=True)
class PolicyStatement:
    """One statement of a stack policy. `logical_ids` empty means every resource ("Resource": "*")."""

    effect: Effect
    actions: tuple[UpdateAction, ...]
    logical_ids: tuple[str, ...] = ()
    # Optional `Condition: {StringEquals: {ResourceType: [...]}}`, e.g. ("AWS::Lambda::Alias",).
    resource_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.effect not in ("Allow", "Deny"):
            raise StackPolicyError(f"stack policy statement: effect {self.effect!r} must be Allow or Deny")
        if not self.actions:
            raise StackPolicyError("stack policy statement: actions must not be empty")
        for action in self.actions:
            if action not in UPDATE_ACTIONS:
                raise StackPolicyError(
                    f"stack policy statement: action {action!r}; allowed: {UPDATE_ACTIONS}"
                )
        for logical_id in self.logical_ids:
            if not isinstance(logical_id, str) or not _LOGICAL_ID.match(logical_id):
                raise StackPolicyError(
                    f"stack policy statement: logical ID {logical_id!r} is not a resolved CloudFormation "
                    "logical ID (letters and digits only); build the policy with protect() at synth"
                )
        for resource_type in self.resource_types:
            if not _RESOURCE_TYPE.match(resource_type):
                raise StackPolicyError(
                    f"stack policy statement: resource type {resource_type!r} is not like AWS::Service::Type"
                )

    def to_json(self) -> dict[str, Any]:
        resource: str | list[str] = (
            "*" if not self.logical_ids else [f"LogicalResourceId/{i}" for i in self.logical_ids]
        )
        out: dict[str, Any] = {
            "Effect": self.effect,
            "Action": list(self.actions) if len(self.actions) > 1 else self.actions[0],
            "Principal": "*",
            "Resource": resource,
        }
        if self.resource_types:
            out["Condition"] = {"StringEquals": {"ResourceType": list(self.resource_types)}}
        return out


@dataclass(frozen=True)
class StackPolicy:
    statements: tuple[PolicyStatement, ...]

    def __post_init__(self) -> None:
        if not self.statements:
            # An empty policy would deny every update: CloudFormation denies whatever is not allowed.
            raise StackPolicyError(
                "stack policy: at least one statement is needed (an Allow, or every update is denied)"
            )

    @property
    def protected_logical_ids(self) -> tuple[str, ...]:
        return tuple(sorted({i for s in self.statements if s.effect == "Deny" for i in s.logical_ids}))

    def to_json(self) -> dict[str, Any]:
        return {"Statement": [s.to_json() for s in self.statements]}

    def render(self) -> str:
        """The policy body: canonical (sorted keys, no whitespace), so equal policies are equal strings."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def _cfn_resource(item: CfnResource | Construct) -> CfnResource:
    if isinstance(item, CfnResource):
        return item
    child = item.node.default_child
    if isinstance(child, CfnResource):
        return child
    raise StackPolicyError(
        f"stack policy: construct {item.node.path!r} has no CloudFormation resource as its default child; "
        "pass the CfnResource to protect instead (e.g. construct.node.find_child('Resource'))"
    )


def logical_id_of(stack: Stack, item: CfnResource | Construct) -> str:
    """The resolved logical ID of `item`, which must belong to `stack` (not a nested or other stack)."""
    resource = _cfn_resource(item)
    return _resolved_logical_id(stack, resource)


def _resolved_logical_id(stack: Stack, resource: CfnResource) -> str:
    if Stack.of(resource) is not stack:
        raise StackPolicyError(
            f"stack policy: {resource.node.path!r} belongs to stack {Stack.of(resource).node.path!r}, not "
            f"{stack.node.path!r}; a stack policy can only name resources of its own stack"
        )
    logical_id = stack.resolve(stack.get_logical_id(resource))
    if not isinstance(logical_id, str) or Token.is_unresolved(logical_id):
        raise StackPolicyError(
            f"stack policy: the logical ID of {resource.node.path!r} did not resolve to a "
            f"string at synth ({logical_id!r})"
        )
    return logical_id


def protect(stack: Stack, resources: Sequence[CfnResource | Construct]) -> StackPolicy:
    """Deny replacement and deletion of `resources`; allow every other update (new versions, config changes).

    An explicit Deny always wins over an Allow in a stack policy, so the order of statements is irrelevant.
    """
    if not resources:
        raise StackPolicyError("stack policy: protect() needs at least one resource to protect")
    ids = set()
    for item in resources:
        resource = _cfn_resource(item)
        if resource.cfn_resource_type in CONTENT_HASHED_TYPES:
            raise StackPolicyError(
                f"stack policy: {resource.node.path!r} is a {resource.cfn_resource_type}, whose logical ID "
                "changes with its content on purpose (a new one every deploy); protecting it would block the "
                "next deploy. Protect the alias or the API instead"
            )
        ids.add(_resolved_logical_id(stack, resource))
    logical_ids = tuple(sorted(ids))
    return StackPolicy(
        statements=(
            PolicyStatement(effect="Allow", actions=("Update:*",)),
            PolicyStatement(
                effect="Deny", actions=("Update:Replace", "Update:Delete"), logical_ids=logical_ids
            ),
        )
    )
