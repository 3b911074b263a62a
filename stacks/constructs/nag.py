"""How cdk-nag spells a resource in a finding, so an acknowledgement matches it in every environment."""

from __future__ import annotations

from aws_cdk import Stack, Token


def nag_stack_arn_pattern(stack: Stack, stack_name: str) -> str:
    """`arn:...:cloudformation:REGION:ACCOUNT:stack/NAME/*` as cdk-nag prints it.

    cdk-nag writes unresolved pseudo parameters as `<AWS::Region>`; an environment with account and region
    in cdk.json has them as literals instead (and the partition too, with enablePartitionLiterals). An
    acknowledgement written for one form does not match the other, and synth fails on the finding.
    """

    def shown(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value

    return (
        f"arn:{shown(stack.partition, 'Partition')}:cloudformation:{shown(stack.region, 'Region')}:"
        f"{shown(stack.account, 'AccountId')}:stack/{stack_name}/*"
    )
