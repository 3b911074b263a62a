"""A regional WAFv2 web ACL on the API stage: AWS managed rules, a per-client rate limit on the login path,
and an alarm when the ACL suddenly blocks a lot.

Rules, in evaluation order (lower priority first):
- 0 `LoginRateLimit`: more than `rate_limit_per_5min` requests from one IP to the login path in 5 minutes
  are blocked with a 429;
- 10 AWS managed `AWSManagedRulesCommonRuleSet` (OWASP-style: XSS, LFI, bad bots, oversize bodies);
- 20 AWS managed `AWSManagedRulesKnownBadInputsRuleSet` (Log4Shell, Java deserialisation, ...).
Everything else is allowed. The rate rule comes first so a password-guessing client is refused before the
managed groups spend their capacity on it, and before each attempt costs a bcrypt hash in the backend.

The login path is matched after URL-decoding (the backend decodes `%6Cogin` to `login` too), as it arrives
both through the custom domain (`/api/v1/auth/login`) and on the stage's own execute-api URL
(`/<stage>/api/v1/auth/login`); disabling the execute-api endpoint is the way to leave only the first.

Logging (optional): WAF insists on a destination named `aws-waf-logs-*`, a physical name this app does not
make, so the caller passes an existing destination's ARN. Only blocked and counted requests are kept, and
the `authorization` and `cookie` headers are redacted: a log line never carries a clinician's token.

The ACL has no physical name: CloudFormation names it, and the alarm reads that name from the ACL's `Ref`
(`name|id|scope`).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Duration, Fn, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.config import AlarmThresholds
from stacks.constructs.alarm_catalogue import RUNBOOK_URL, SPECS, describe

MANAGED_RULE_GROUPS = (
    ("AWSManagedRulesCommonRuleSet", 10),
    ("AWSManagedRulesKnownBadInputsRuleSet", 20),
)
LOGIN_RULE = "LoginRateLimit"
LOGIN_RULE_PRIORITY = 0
REDACTED_HEADERS = ("authorization", "cookie")
TOO_MANY_BODY = "TooManyRequests"
BLOCKED_ALARM = "WafBlockedRequests"
NO_LOG_DESTINATION_REASON = (
    "security.waf.log_destination_arn is null in cdk.json: WAF logs only to a destination named "
    "aws-waf-logs-*, and this app creates no physical names"
)


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


class ApiFirewall(Construct):
    """`.web_acl`, `.association`, `.blocked_alarm`, and `.logging` when a destination is given."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: apigw.Stage,
        login_paths: Sequence[str],
        rate_limit_per_5min: int,
        topic: sns.ITopic | None,
        blocked_requests_threshold: int = 100,
        count_only_rules: Sequence[str] = (),
        log_destination_arn: str | None = None,
        runbook_url: str = RUNBOOK_URL,
    ) -> None:
        """`login_paths`: literal paths like /api/v1/auth/login; `rate_limit_per_5min`: within WAF's bounds
        (stacks/config/security.py checks both). `count_only_rules`: rule names inside the managed groups to
        count instead of block (e.g. `SizeRestrictions_BODY` for an API that takes bodies over 8 KB).
        `log_destination_arn`: an `aws-waf-logs-*` log group, bucket or Firehose stream."""
        super().__init__(scope, construct_id)
        rules = [
            self._managed_group(name, priority, count_only_rules) for name, priority in MANAGED_RULE_GROUPS
        ]
        if login_paths:
            rules.insert(0, self._login_rate_rule(stage, login_paths, rate_limit_per_5min))
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{construct_id}WebAcl"),
            rules=rules,
            custom_response_bodies={
                TOO_MANY_BODY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content='{"detail":{"error":"TooManyRequests","message":"Too many login attempts"}}',
                    content_type="APPLICATION_JSON",
                )
            }
            if login_paths
            else None,
            description="Managed rules and a login rate limit for the API stage",
        )
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn
        )

        # The alarm catalogue's WafBlockedRequests entry (README alarm table, docs/runbook.md section).
        spec = SPECS[BLOCKED_ALARM]
        self.blocked_alarm = cloudwatch.Alarm(
            self,
            BLOCKED_ALARM,
            metric=self.blocked_requests_metric(),
            threshold=blocked_requests_threshold,
            evaluation_periods=spec.evaluation_periods,
            comparison_operator=spec.comparison,
            treat_missing_data=spec.missing_data,
            alarm_description=describe(
                spec,
                subject="API",
                thresholds=AlarmThresholds(waf_blocked_requests=blocked_requests_threshold),
                runbook_url=runbook_url,
                names={"web_acl_arn": self.web_acl.attr_arn},
            ),
        )
        if topic is not None:
            action = cw_actions.SnsAction(topic)
            self.blocked_alarm.add_alarm_action(action)
            self.blocked_alarm.add_ok_action(action)

        self.logging: wafv2.CfnLoggingConfiguration | None = None
        if log_destination_arn is None:
            Validations.of(self.web_acl).acknowledge(
                Acknowledgment(
                    id="HIPAA.Security::HIPAA.Security-WAFv2LoggingEnabled",
                    reason=NO_LOG_DESTINATION_REASON,
                )
            )
        else:
            self.logging = wafv2.CfnLoggingConfiguration(
                self,
                "Logging",
                resource_arn=self.web_acl.attr_arn,
                log_destination_configs=[log_destination_arn],
                redacted_fields=[
                    wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": name})
                    for name in REDACTED_HEADERS
                ],
                logging_filter={
                    "DefaultBehavior": "DROP",
                    "Filters": [
                        {
                            "Behavior": "KEEP",
                            "Requirement": "MEETS_ANY",
                            "Conditions": [
                                {"ActionCondition": {"Action": "BLOCK"}},
                                {"ActionCondition": {"Action": "COUNT"}},
                            ],
                        }
                    ],
                },
            )

    @property
    def web_acl_name(self) -> str:
        """The CloudFormation-generated name (first field of the ACL's `Ref`, `name|id|scope`)."""
        return Fn.select(0, Fn.split("|", self.web_acl.ref))

    def blocked_requests_metric(self, rule: str = "ALL") -> cloudwatch.Metric:
        """AWS/WAFV2 BlockedRequests of this ACL (`rule` = a rule's metric name, or ALL), 5-minute sums."""
        return cloudwatch.Metric(
            namespace="AWS/WAFV2",
            metric_name="BlockedRequests",
            dimensions_map={"WebACL": self.web_acl_name, "Region": self.web_acl.stack.region, "Rule": rule},
            statistic="Sum",
            period=Duration.minutes(5),
        )

    @staticmethod
    def _managed_group(
        name: str, priority: int, count_only_rules: Sequence[str]
    ) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS",
                    name=name,
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(
                            name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                        )
                        for rule in count_only_rules
                    ]
                    or None,
                )
            ),
            visibility_config=_visibility(name),
        )

    @staticmethod
    def _login_rate_rule(
        stage: apigw.Stage, login_paths: Sequence[str], limit: int
    ) -> wafv2.CfnWebACL.RuleProperty:
        """One per-IP limit over every login path: guesses spread over several logins still add up."""

        def starts_with(path: str) -> wafv2.CfnWebACL.StatementProperty:
            return wafv2.CfnWebACL.StatementProperty(
                byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                    positional_constraint="STARTS_WITH",
                    search_string=path,
                    text_transformations=[
                        wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="URL_DECODE")
                    ],
                )
            )

        scope_down = wafv2.CfnWebACL.StatementProperty(
            or_statement=wafv2.CfnWebACL.OrStatementProperty(
                statements=[
                    starts_with(prefix)
                    for path in login_paths
                    for prefix in (path, f"/{stage.stage_name}{path}")
                ]
            )
        )
        return wafv2.CfnWebACL.RuleProperty(
            name=LOGIN_RULE,
            priority=LOGIN_RULE_PRIORITY,
            action=wafv2.CfnWebACL.RuleActionProperty(
                block=wafv2.CfnWebACL.BlockActionProperty(
                    custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                        response_code=429, custom_response_body_key=TOO_MANY_BODY
                    )
                )
            ),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=limit,
                    aggregate_key_type="IP",
                    evaluation_window_sec=300,
                    scope_down_statement=scope_down,
                )
            ),
            visibility_config=_visibility(LOGIN_RULE),
        )
