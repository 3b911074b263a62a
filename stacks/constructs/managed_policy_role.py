"""A role whose grants land in one customer-managed policy instead of an inline default policy.

CDK puts every grant made to a role it owns (`fn.grant_invoke(role)`, a queue's grant to an event source, the
X-Ray statement of an actively traced function, a deployment group's right to invoke its hooks) into the
role's `DefaultPolicy`, an inline `AWS::IAM::Policy`, which HIPAA Security's IAMNoInlinePolicy rejects. A
`ManagedPolicyRole` passed as `role=` to a Function or a LambdaDeploymentGroup receives those statements in
one `AWS::IAM::ManagedPolicy` attached to it: `add_to_principal_policy` is overridden, and jsii dispatches
the library's own calls to this Python override.

The managed policy is the role's child `DefaultPolicy`, as CDK's inline one is: a function depends on its
whole role construct, so it still waits for the policy (its `DependsOn` names it), and code asking whether
a role has a default policy (`encryption.EnvironmentKey.grant_function`, `alarms.AsyncFailures.attach`) adds
to it through the role.

A role built here cannot sit where a function or deployment group would have built its own
(`<owner>/ServiceRole`): the owner does not exist yet. `keep_logical_id` gives it the logical ID CDK gave
that role, so a deployed role is updated in place rather than replaced (tests/test_catalog_stacks.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import App, CfnResource, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

POLICY_ID = "DefaultPolicy"


def logical_id_at(path: Sequence[str]) -> str:
    """The logical ID CDK allocates to a resource whose construct path below its stack is `path`
    (e.g. `("Worker", "Function", "ServiceRole", "Resource")`): computed by CDK itself, in a scratch stack
    that is never synthesized."""
    if not path:
        raise ValueError("logical_id_at: the path must name at least one construct")
    stack = Stack(App(auto_synth=False), "Scratch")
    scope: Construct = stack
    for part in path[:-1]:
        scope = Construct(scope, part)
    resource = CfnResource(scope, path[-1], type="Scratch::Resource")
    return str(stack.resolve(resource.logical_id))


def path_below_stack(construct: Construct) -> tuple[str, ...]:
    """The construct IDs from just below `construct`'s stack down to `construct` itself."""
    stack_path, path = Stack.of(construct).node.path, construct.node.path
    below = path[len(stack_path) + 1 :] if stack_path else path
    return tuple(below.split("/"))


class ManagedPolicyRole(iam.Role):
    """`iam.Role` whose principal-policy statements go to one customer-managed policy (created with the
    first statement: a managed policy must have one)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        assumed_by: iam.IPrincipal,
        description: str,
        policy_description: str,
        keep_logical_id: Sequence[str] | None = None,
        replaces_aws_managed: Sequence[str] = (),
    ) -> None:
        """`keep_logical_id`: the construct path (below the stack, ending in "Resource") of the role this one
        replaces in code, whose logical ID it keeps. `replaces_aws_managed`: names of AWS managed policies
        (e.g. "service-role/AWSCodeDeployRoleForLambdaLimited") that the library attaches to any role it is
        given and that this role's own, scoped statements replace: they are not attached."""
        super().__init__(scope, construct_id, assumed_by=assumed_by, description=description)
        self._replaced = tuple(replaces_aws_managed)
        self._policy_description = policy_description
        self._policy: iam.ManagedPolicy | None = None
        self._attached: set[str] = set()
        if keep_logical_id is not None:
            cfn = self.node.default_child
            assert isinstance(cfn, iam.CfnRole)
            cfn.override_logical_id(logical_id_at(keep_logical_id))

    @property
    def policy(self) -> iam.ManagedPolicy | None:
        """The customer-managed policy holding every statement added so far (None before the first)."""
        return self._policy

    def add_to_principal_policy(self, statement: iam.PolicyStatement) -> iam.AddToPrincipalPolicyResult:
        if self._policy is None:
            self._policy = iam.ManagedPolicy(
                self, POLICY_ID, description=self._policy_description, roles=[self]
            )
        self._policy.add_statements(statement)
        return iam.AddToPrincipalPolicyResult(statement_added=True, policy_dependable=self._policy)

    def allow_function_basics(self, log_group: logs.ILogGroup, *, in_vpc: bool = False) -> None:
        """What a Lambda function adds to a role it builds itself, which a role passed in does not get:
        writing its own log group (instead of AWSLambdaBasicExecutionRole's every log group) and, in a
        VPC, AWS's policy for the function's network interfaces."""
        self.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        if in_vpc:
            self.add_managed_policy(
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole")
            )

    def add_managed_policy(self, policy: iam.IManagedPolicy) -> None:
        arn = json.dumps(Stack.of(self).resolve(policy.managed_policy_arn))
        if any(f':iam::aws:policy/{name}"' in arn for name in self._replaced):
            return
        # A role shared by several functions is asked for the same AWS managed policy by each of them.
        if arn in self._attached:
            return
        self._attached.add(arn)
        super().add_managed_policy(policy)


def log_writer_policy(
    scope: Construct, construct_id: str, *, description: str, log_group: logs.ILogGroup, role: iam.IRole
) -> iam.ManagedPolicy:
    """A customer-managed policy (not an inline one: HIPAA IAMNoInlinePolicy) letting `role` write the
    streams of `log_group` only, in place of the AWS managed AWSLambdaBasicExecutionRole."""
    return iam.ManagedPolicy(
        scope,
        construct_id,
        description=description,
        statements=[
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        ],
        roles=[role],
    )
