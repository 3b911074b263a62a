"""One customer-managed KMS key per environment for the data the backend leaves at rest outside its database.

What it encrypts, and how to apply it (at creation preferred; on an existing construct otherwise):
- CloudWatch log group: `logs.LogGroup(..., **key.log_group_kwargs())`, or `key.encrypt_log_group(group)`;
- Lambda environment variables: `lambda_.Function(..., **key.function_kwargs())` then
  `key.grant_function(fn)`, or `key.encrypt_function(fn)` (which also grants);
- SQS queue: `sqs.Queue(..., **key.queue_kwargs())` only (the queue's grants must know the key); see below.

Why a customer-managed key rather than the services' defaults: log lines, environment variables and queued
messages of a credentialing backend can carry clinicians' identifiers. With a customer-managed key, reading
them needs both the resource's own permission and `kms:Decrypt` on this key (one key policy to review, one
CloudTrail trail of every use), and disabling the key makes every copy unreadable at once.

Key policy:
- the account (root) has full access and delegates to IAM, as CDK's default key policy does: roles get
  key use through their own IAM policies (`grant_function`, the queues' grants);
- the stack's function roles are also named, for kms:Decrypt only (`name_function_roles`, applied by
  `apply_stack_security` once every function exists), so the key policy itself lists who uses the key;
- CloudWatch Logs (the regional `logs.<region>.amazonaws.com` principal) may use the key only with an
  encryption context naming a log group of this account and region (`kms:EncryptionContext:aws:logs:arn`),
  which is how CloudWatch Logs calls KMS for an encrypted log group; no other service is named.

Rotation is on (yearly, by KMS) and the key is RETAINED when it leaves the template: deleting it would make
every log line and message it encrypted unreadable, including those kept for audit.

Where SQS-managed encryption (SSE-SQS) must stay:
A queue encrypted with this key can only be written by principals allowed to use it. A Lambda function's
own role (async-invocation destinations, a worker that re-queues) gets that from the queue's grants. An
AWS service that delivers into the queue itself — an EventBridge rule or target dead-letter queue, an SNS
subscription, S3 notifications — calls KMS as its service principal, so this key's policy would have to name
that service; EventBridge does not support `aws:SourceArn`/`aws:SourceAccount` conditions on that KMS call,
so such a statement would let the service use the key for any account's rule. Those queues keep
`QueueEncryption.SQS_MANAGED` (encrypted at rest with keys SQS owns, nothing to grant): their messages
are event envelopes, not credential records. Say so with a `checkov_skip` on the queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# The actions CloudWatch Logs needs on a key that encrypts log groups (AWS's documented statement).
LOGS_KEY_ACTIONS = ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*")
LOGS_CONTEXT_KEY = "kms:EncryptionContext:aws:logs:arn"


class EnvironmentKey(Construct):
    """`.key`: the environment's KMS key (rotation on, retained), usable by this account's CloudWatch Logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        pending_window_days: int = 30,
    ) -> None:
        super().__init__(scope, construct_id)
        if not description.strip():
            raise ValueError(f"EnvironmentKey {construct_id!r}: description must say what the key encrypts")
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            description=description,
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
            # Only used if someone schedules deletion by hand: the longest window KMS allows.
            pending_window=Duration.days(pending_window_days),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsForThisAccountsLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=list(LOGS_KEY_ACTIONS),
                resources=["*"],
                conditions={
                    "ArnLike": {
                        LOGS_CONTEXT_KEY: (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                        )
                    }
                },
            )
        )

    def name_function_roles(self, roles: Iterable[iam.IRole]) -> None:
        """Name the functions' roles in the key policy, for kms:Decrypt only (their environments and the
        queues they read). The account statement still delegates to IAM, so each role also needs its own
        grant (`grant_function`); this statement makes the key policy say which roles use the key."""
        principals = {id(r): r for r in roles}
        if not principals:
            return
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowThisEnvironmentsFunctionRolesToDecrypt",
                principals=[iam.ArnPrincipal(r.role_arn) for r in principals.values()],
                actions=["kms:Decrypt"],
                resources=["*"],
            )
        )

    # --- at creation -------------------------------------------------------------------------------------

    def log_group_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `logs.LogGroup(...)`."""
        return {"encryption_key": self.key}

    def function_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `lambda_.Function(...)`; call `grant_function` on the result too."""
        return {"environment_encryption": self.key}

    def queue_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `sqs.Queue(...)`; not for queues AWS services deliver into (module doc)."""
        return {"encryption": sqs.QueueEncryption.KMS, "encryption_master_key": self.key}

    def grant_function(self, fn: lambda_.IFunction) -> None:
        """Let the function's role decrypt what this key encrypted (its environment, the queues it reads).

        Into the role's existing default policy when it has one; otherwise (a role built with its own
        customer-managed policy) a customer-managed policy of its own, so no inline policy appears."""
        role = fn.role
        if (
            role is None
            or not isinstance(role, Construct)
            or not isinstance(fn, lambda_.Function)
            or role.node.try_find_child("DefaultPolicy")
        ):
            self.key.grant_decrypt(fn)
            return
        policy = iam.ManagedPolicy(
            fn,
            "EnvironmentKeyPolicy",
            description="Decrypts the function's environment with the environment's KMS key",
            statements=[
                iam.PolicyStatement(
                    sid="DecryptEnvironment", actions=["kms:Decrypt"], resources=[self.key.key_arn]
                )
            ],
            roles=[role],
        )
        # Its first invocation must already be able to read its environment.
        fn.node.find_child("Resource").node.add_dependency(policy)

    # --- on existing constructs (their L1 resource) ------------------------------------------------------

    def encrypt_log_group(self, log_group: logs.LogGroup) -> None:
        """Set the log group's KmsKeyId; the key policy already admits CloudWatch Logs for this account."""
        cfn = log_group.node.default_child
        if not isinstance(cfn, logs.CfnLogGroup):
            raise TypeError(f"{log_group.node.path}: expected a logs.LogGroup built in this app")
        cfn.kms_key_id = self.key.key_arn

    def encrypt_function(self, fn: lambda_.Function) -> None:
        """Encrypt the function's environment variables with this key and let its role decrypt them."""
        cfn = fn.node.default_child
        if not isinstance(cfn, lambda_.CfnFunction):
            raise TypeError(f"{fn.node.path}: expected a lambda_.Function built in this app")
        cfn.kms_key_arn = self.key.key_arn
        self.grant_function(fn)


def encrypt_all(scope: Construct, key: EnvironmentKey) -> None:
    """Encrypt every log group and every function's environment under `scope` with `key` (those that name no
    key yet), so a log group or function added later cannot be left out. Call it once the scope is complete:
    constructs added after it are not seen."""
    for child in scope.node.find_all():
        if isinstance(child, logs.LogGroup):
            cfn = child.node.default_child
            if isinstance(cfn, logs.CfnLogGroup) and cfn.kms_key_id is None:
                key.encrypt_log_group(child)
        elif isinstance(child, logs.CfnLogGroup) and child.kms_key_id is None:
            # A provider's own L1 log group (no L2 around it).
            child.kms_key_id = key.key.key_arn
        elif isinstance(child, lambda_.Function):
            cfn = child.node.default_child
            if isinstance(cfn, lambda_.CfnFunction) and cfn.kms_key_arn is None:
                key.encrypt_function(child)


def apply_stack_security(scope: Construct, key: EnvironmentKey) -> None:
    """What every stack of this app does once its constructs exist: the environment key on every log group
    and function environment (`encrypt_all`), the key policy naming those functions' roles, and each
    function's logging scoped to its own log group."""
    from stacks.constructs.guarded_function import scope_function_logging

    encrypt_all(scope, key)
    key.name_function_roles(
        fn.role
        for fn in scope.node.find_all()
        if isinstance(fn, lambda_.Function) and fn.role is not None and Stack.of(fn) is Stack.of(key)
    )
    scope_function_logging(scope)
