"""Where alarms go: two encrypted SNS topics per environment, one that notifies and one that pages.

Two topics rather than one with a severity tag, because a paging service bills and wakes people per message
and cannot filter on an alarm's description: only the composite "service unhealthy" alarm publishes to
`paging_topic` (HTTPS pager + email + Slack); every other alarm publishes to `topic` (email + Slack). Each
alarm's description still starts with its severity ([notify] / [page]) so a human reading email or Slack
sees it at once. Both topics share one customer-managed key (rotation on): one key policy to review and pay.
"""

from __future__ import annotations

from aws_cdk import Annotations, Aws, Names, Stack
from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from stacks.config import AlarmSettings

# Services that publish to the topics: CloudWatch (alarm actions), CodeDeploy (deployment triggers) and
# EventBridge (out-of-band change rules). SNS encrypts with the caller's rights, so each needs the key.
PUBLISHING_SERVICES = ("cloudwatch.amazonaws.com", "codedeploy.amazonaws.com", "events.amazonaws.com")
# The publisher whose KMS calls carry aws:SourceAccount and aws:SourceArn (documented by CloudWatch).
SOURCE_ACCOUNT_PUBLISHER = "cloudwatch.amazonaws.com"
# The encryption context SNS passes to KMS for a topic's messages: the topic's ARN.
SNS_CONTEXT_KEY = "kms:EncryptionContext:aws:sns:topicArn"
# Read-only ceiling for anything typed in the Slack channel: the channel only receives notifications.
SLACK_GUARDRAIL_POLICY = "CloudWatchReadOnlyAccess"


class OnCallTopic(Construct):
    """`.topic` notifies (every alarm, ALARM and OK); `.paging_topic` pages (the composite alarm only)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AlarmSettings) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description="Encrypts the CredentialMate on-call SNS topics (alarms, deployments, change alerts)",
        )
        # AWS's documented statement for CloudWatch alarms on an encrypted topic, extended to the other
        # publishers, and bound to this account's topics: SNS calls KMS with the topic's ARN as encryption
        # context (`aws:sns:topicArn`), so the services may use the key only for a topic of this account and
        # region, never for another account's topic that names this key. Not aws:SourceAccount: that the KMS
        # call SNS makes for each of these publishers carries it is not documented (EventBridge's reportedly
        # does not), and a condition on an absent key would drop alerts silently. The topic policies below
        # carry aws:SourceAccount on sns:Publish, where it is documented.
        # The ARN pattern rather than the two topics' ARNs: the topics reference the key, so naming them here
        # would be a dependency cycle.
        # CloudWatch documents aws:SourceAccount/aws:SourceArn on its KMS calls for alarm actions (its
        # confused-deputy guidance), so its statement carries them too; the other publishers keep the
        # encryption-context condition only.
        stack = Stack.of(self)
        topics_of_this_account = {
            SNS_CONTEXT_KEY: f"arn:{stack.partition}:sns:{stack.region}:{stack.account}:*",
        }
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccountToUseKey",
                principals=[iam.ServicePrincipal(SOURCE_ACCOUNT_PUBLISHER)],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        **topics_of_this_account,
                        "aws:SourceArn": (
                            f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"
                        ),
                    },
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmPublishersToUseKey",
                principals=[
                    iam.ServicePrincipal(s) for s in PUBLISHING_SERVICES if s != SOURCE_ACCOUNT_PUBLISHER
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"ArnLike": topics_of_this_account},
            )
        )
        self.topic = self._topic("Topic", "CredentialMate alerts")
        self.paging_topic = self._topic("PagingTopic", "CredentialMate PAGE")

        for email in config.emails:
            self.topic.add_subscription(subs.EmailSubscription(email))
            self.paging_topic.add_subscription(subs.EmailSubscription(email))
        if config.paging_url:
            # Only the paging topic reaches the pager: one page per "service unhealthy", not one per alarm.
            self.paging_topic.add_subscription(
                subs.UrlSubscription(config.paging_url, protocol=sns.SubscriptionProtocol.HTTPS)
            )
        self.slack: chatbot.SlackChannelConfiguration | None = None
        if config.has_slack:
            assert config.slack_workspace_id is not None and config.slack_channel_id is not None
            self.slack = chatbot.SlackChannelConfiguration(
                self,
                "Slack",
                # The L2 requires a name (CloudFormation's ConfigurationName is mandatory and unique per
                # account). Derived from the construct path, so it is deterministic, differs between the
                # staging and prod stacks even in one account, and changes only if this construct moves.
                slack_channel_configuration_name=Names.unique_resource_name(
                    self, max_length=128, separator="-"
                ),
                slack_workspace_id=config.slack_workspace_id,
                slack_channel_id=config.slack_channel_id,
                notification_topics=[self.topic, self.paging_topic],
                guardrail_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(SLACK_GUARDRAIL_POLICY)],
            )
        if not config.emails and not config.has_slack and not config.paging_url:
            Annotations.of(self).add_warning_v2(
                "credmate:oncall-no-subscribers",
                "OnCall: no emails, Slack channel or paging_url configured "
                "(cdk.json context environments.<env>.alarms): alarms will reach nobody.",
            )

    def _topic(self, construct_id: str, display_name: str) -> sns.Topic:
        topic = sns.Topic(
            self, construct_id, master_key=self.key, enforce_ssl=True, display_name=display_name
        )
        # The explicit topic policy (enforce_ssl) replaces the default one, so say who may publish.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmPublishers",
                principals=[iam.ServicePrincipal(s) for s in PUBLISHING_SERVICES],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        return topic
