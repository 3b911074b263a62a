"""Sets a stack policy on another stack, as part of `cdk deploy` (CDK has no stack-policy support: aws-cdk
issue 1697).

Why a second, small stack rather than a custom resource inside the backend stack: a stack policy applies to
the *next* update of the stack it protects. Setting it from inside that stack would make the backend's own
update depend on a resource of itself, and a failed SetStackPolicy would roll back a good application
deploy. Here the backend deploys first (`add_dependency`), then this stack sets the policy computed from the
backend's synthesized logical IDs, so the policy always matches what was just deployed and guards the next
deploy. `make deploy` deploys both (`cdk deploy STACK STACK-policy`).

Idempotent: the policy body is a plain string at synth and the custom resource's physical ID is a hash of
it. An unchanged policy leaves the resource unchanged, so CloudFormation makes no call at all; a changed one
updates it (new physical ID), which calls SetStackPolicy again. The old physical ID's "delete" is a no-op on
purpose: removing this stack leaves the last policy in place (fail safe), see docs/guardrails.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from aws_cdk import Acknowledgment, Annotations, NestedStack, Stack, Token, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.constructs.nag import checkov_skip
from stacks.constructs.stack_policy import StackPolicy, StackPolicyError

# Facts tests/test_security_acknowledgements.py checks against the template.
PROVIDER_DLQ_REASON = (
    "the provider of this stack's only custom resource: CloudFormation waits for its response and fails "
    "the update without one"
)
PROVIDER_VPC_REASON = (
    "its role allows only cloudformation:SetStackPolicy on the target stack and writing its own log group"
)


def policy_physical_id(body: str) -> str:
    return f"stack-policy-{hashlib.sha256(body.encode()).hexdigest()[:20]}"


class StackPolicyStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        target: Stack,
        policy: StackPolicy,
        encryption_key: kms.IKey,
        nested: Sequence[tuple[NestedStack, StackPolicy]] = (),
        **kwargs: Any,
    ) -> None:
        """`encryption_key`: the environment's key (the target stack's), which encrypts this stack's log
        group too; its key policy admits CloudWatch Logs for every log group of the account and region."""
        super().__init__(
            scope,
            construct_id,
            description=f"Stack policy of {target.stack_name} (credmate-lambda guardrails)",
            **kwargs,
        )
        if Token.is_unresolved(target.stack_name):
            raise StackPolicyError(
                f"StackPolicyStack {construct_id}: the target stack's name must be known at "
                "synth; give the target stack an explicit stack_name"
            )
        for attr in ("account", "region"):
            mine, theirs = getattr(self, attr), getattr(target, attr)
            if (not Token.is_unresolved(mine) or not Token.is_unresolved(theirs)) and mine != theirs:
                raise StackPolicyError(
                    f"StackPolicyStack {construct_id}: {attr} {mine!r} differs from the target stack's "
                    f"{theirs!r}; pass the target's env (SetStackPolicy is a same-account, same-region "
                    "call)"
                )
        self.add_stack_dependency(
            target, "the stack policy names the logical IDs the target stack just deployed"
        )
        self._target_name = target.stack_name
        self.body = policy.render()
        self.policy = policy
        # A nested stack is a stack of its own to CloudFormation, with its own stack policy: each function
        # group's (stacks/function_groups.py), set by the same provider. The target's policy protects the
        # nested stack resources themselves.
        self.nested_bodies = {n.node.id: p.render() for n, p in nested}
        nested_arns = {n.node.id: n.nested_stack_resource.ref for n, _p in nested if n.nested_stack_resource}
        # The target's stack ID (its ARN, arn:...:stack/NAME/UUID), imported from the target: the resource
        # SetStackPolicy is authorized against, with no pattern over the UUID. A stack's ID never changes
        # while the stack exists, so this export never has to change under its importer (what makes
        # cross-stack exports fragile); like the key's, it goes only when this stack stops importing it.
        self.target_stack_arn = target.stack_id
        call = cr.AwsSdkCall(
            service="CloudFormation",
            action="setStackPolicy",
            parameters={"StackName": target.stack_name, "StackPolicyBody": self.body},
            physical_resource_id=cr.PhysicalResourceId.of(policy_physical_id(self.body)),
        )
        log_group = logs.LogGroup(
            self, "SetStackPolicyLogs", retention=logs.RetentionDays.ONE_YEAR, encryption_key=encryption_key
        )
        # Our own role with one customer-managed policy, rather than the provider's default role (AWS managed
        # policy for logs + inline policy): each permission is scoped to one ARN.
        self.role = iam.Role(
            self,
            "SetStackPolicyRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Sets the stack policy of {target.stack_name}",
        )
        self.managed_policy = iam.ManagedPolicy(
            self,
            "SetStackPolicyPermissions",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    actions=["cloudformation:SetStackPolicy"],
                    resources=[self.target_stack_arn, *nested_arns.values()],
                ),
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                ),
            ],
        )
        # Keyword arguments alike in shape to other calls (the key's in encryption.py): no shared logic.
        self.resource = cr.AwsCustomResource(
            self,
            "SetStackPolicy",
            on_create=call,
            on_update=call,
            role=self.role,
            # The SDK bundled with the Lambda runtime has SetStackPolicy; fetching the latest one at deploy
            # time would need internet access from the handler and make deploys non-reproducible.
            install_latest_aws_sdk=False,
            log_group=log_group,
        )
        self.resource.node.add_dependency(self.managed_policy)
        for name, arn in nested_arns.items():
            body = self.nested_bodies[name]
            nested_call = cr.AwsSdkCall(
                service="CloudFormation",
                action="setStackPolicy",
                parameters={"StackName": arn, "StackPolicyBody": body},
                physical_resource_id=cr.PhysicalResourceId.of(policy_physical_id(body)),
            )
            nested_resource = cr.AwsCustomResource(
                self,
                f"SetStackPolicy{name}",
                on_create=nested_call,
                on_update=nested_call,
                role=self.role,
                install_latest_aws_sdk=False,
                log_group=log_group,
            )
            nested_resource.node.add_dependency(self.managed_policy)
        self._acknowledge(log_group)
        # The log group names the target stack's key: a strong reference (an export the target keeps while
        # this stack imports it) is the intended one, since this stack is deployed after the target anyway.
        Annotations.of(self).acknowledge_warning(
            "@aws-cdk/core:crossStackReferencesDefaultStrong",
            "the environment key's ARN is imported from the target stack, which deploys first",
        )

    def _acknowledge(self, log_group: logs.LogGroup) -> None:
        """cdk-nag findings acknowledged one by one, each with the reason it is acceptable here."""
        provider = self.node.try_find_child(
            f"AWS{cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace('-', '')}"
        )
        if provider is None:
            raise StackPolicyError(
                "StackPolicyStack: AwsCustomResource provider function not found; the "
                "aws-cdk-lib layout changed, update stacks/policy_stack.py"
            )
        provider_fn = provider.node.find_child("Resource")
        assert isinstance(provider_fn, lambda_.CfnFunction)
        # CloudFormation updates one stack at a time and this stack has one custom resource: one run at most.
        provider_fn.reserved_concurrent_executions = 1
        Validations.of(provider_fn).acknowledge(
            Acknowledgment(id="HIPAA.Security::HIPAA.Security-LambdaDLQ", reason=PROVIDER_DLQ_REASON),
            Acknowledgment(id="HIPAA.Security::HIPAA.Security-LambdaInsideVPC", reason=PROVIDER_VPC_REASON),
        )
        checkov_skip(provider_fn, "CKV_AWS_116", PROVIDER_DLQ_REASON)
        checkov_skip(provider_fn, "CKV_AWS_117", PROVIDER_VPC_REASON)

    @property
    def target_name(self) -> str:
        return self._target_name
