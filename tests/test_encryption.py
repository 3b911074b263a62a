"""EnvironmentKey: rotation, retention, a key policy scoped to this account, and the ways it is applied."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

ACCOUNT, REGION = "123456789012", "eu-west-1"


@pytest.fixture(scope="module")
def encrypted() -> dict[str, Any]:
    """One small stack using every helper: at creation and on existing constructs."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_sqs as sqs

    from stacks.constructs.encryption import EnvironmentKey

    stack = cdk.Stack(cdk.App(), "enc", env=cdk.Environment(account=ACCOUNT, region=REGION))
    key = EnvironmentKey(stack, "DataKey", description="Encrypts the test environment's logs and queues")

    def function(name: str, **kwargs: Any) -> lambda_.Function:
        return lambda_.Function(
            stack,
            name,
            runtime=lambda_.Runtime.PYTHON_3_11,
            handler="index.handler",
            code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
            environment={"SETTING": "value"},
            **kwargs,
        )

    created_fn = function("CreatedFn", **key.function_kwargs())
    key.grant_function(created_fn)
    existing_fn = function("ExistingFn")
    key.encrypt_function(existing_fn)
    plain_fn = function("PlainFn")

    logs.LogGroup(stack, "CreatedLogs", **key.log_group_kwargs())
    existing_logs = logs.LogGroup(stack, "ExistingLogs")
    key.encrypt_log_group(existing_logs)
    logs.LogGroup(stack, "PlainLogs")

    queue = sqs.Queue(stack, "Queue", **key.queue_kwargs())
    queue.grant_send_messages(plain_fn)
    template = Template.from_stack(stack)
    return {
        "template": template,
        "key_id": stack.get_logical_id(key.key.node.default_child),  # type: ignore[arg-type]
        "json": template.to_json(),
    }


def _ref_arn(key_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [key_id, "Arn"]}


def _role_policy_statements(tpl_json: dict[str, Any], fn_prefix: str) -> list[dict[str, Any]]:
    """The statements of the policies attached to the role of the function whose ID starts so: its default
    policy, or (a role without one when the key was granted) its own EnvironmentKeyPolicy."""
    out: list[dict[str, Any]] = []
    for lid, res in tpl_json["Resources"].items():
        if (res["Type"] == "AWS::IAM::Policy" and lid.startswith(f"{fn_prefix}ServiceRoleDefaultPolicy")) or (
            res["Type"] == "AWS::IAM::ManagedPolicy" and lid.startswith(f"{fn_prefix}EnvironmentKeyPolicy")
        ):
            out.extend(res["Properties"]["PolicyDocument"]["Statement"])
    return out


def test_key_rotates_and_is_retained(encrypted: dict[str, Any]) -> None:
    tpl: Template = encrypted["template"]
    tpl.resource_count_is("AWS::KMS::Key", 1)
    tpl.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True, "PendingWindowInDays": 30},
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_key_policy_admits_only_this_account_and_its_log_groups(encrypted: dict[str, Any]) -> None:
    (key,) = [r for r in encrypted["json"]["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    principals = [s["Principal"] for s in statements]
    # Exactly two principals: this account's root (delegation to IAM) and CloudWatch Logs of this region.
    assert len(statements) == 2, statements
    (root,) = [s for s in statements if "AWS" in s["Principal"]]
    assert root["Principal"]["AWS"] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::{ACCOUNT}:root"]]
    }
    (logs_stmt,) = [s for s in statements if "Service" in s["Principal"]]
    assert logs_stmt["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}, principals
    assert set(logs_stmt["Action"]) == {
        "kms:Encrypt*",
        "kms:Decrypt*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:Describe*",
    }
    assert logs_stmt["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": {
                "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":logs:{REGION}:{ACCOUNT}:log-group:*"]]
            }
        }
    }


def test_log_groups_carry_the_key(encrypted: dict[str, Any]) -> None:
    tpl_json = encrypted["json"]
    arn = _ref_arn(encrypted["key_id"])
    groups = {lid: r for lid, r in tpl_json["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    by_prefix = {
        p: [r for lid, r in groups.items() if lid.startswith(p)] for p in ("Created", "Existing", "Plain")
    }
    assert by_prefix["Created"][0]["Properties"]["KmsKeyId"] == arn
    assert by_prefix["Existing"][0]["Properties"]["KmsKeyId"] == arn
    assert "KmsKeyId" not in by_prefix["Plain"][0].get("Properties", {})


def test_functions_environment_is_encrypted_and_roles_may_decrypt(encrypted: dict[str, Any]) -> None:
    tpl: Template = encrypted["template"]
    arn = _ref_arn(encrypted["key_id"])
    fns = tpl.find_resources("AWS::Lambda::Function")
    for prefix in ("CreatedFn", "ExistingFn"):
        (fn,) = [r for lid, r in fns.items() if lid.startswith(prefix)]
        assert fn["Properties"]["KmsKeyArn"] == arn, prefix
        statements = _role_policy_statements(encrypted["json"], prefix)
        assert any(s["Action"] == "kms:Decrypt" and s["Resource"] == arn for s in statements), statements
    (plain,) = [r for lid, r in fns.items() if lid.startswith("PlainFn")]
    assert "KmsKeyArn" not in plain["Properties"]


def test_queue_uses_the_key_and_its_producer_may_use_it(encrypted: dict[str, Any]) -> None:
    tpl: Template = encrypted["template"]
    tpl.has_resource_properties(
        "AWS::SQS::Queue",
        {"KmsMasterKeyId": _ref_arn(encrypted["key_id"]), "SqsManagedSseEnabled": Match.absent()},
    )
    # The queue's own grant gives a producer the key's data keys: no key-policy edit per producer.
    statements = _role_policy_statements(encrypted["json"], "PlainFn")
    kms_actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= kms_actions, statements


def test_description_is_required() -> None:
    import aws_cdk as cdk

    from stacks.constructs.encryption import EnvironmentKey

    with pytest.raises(ValueError, match=r"EnvironmentKey 'K'.*description"):
        EnvironmentKey(cdk.Stack(cdk.App(), "s"), "K", description="  ")
