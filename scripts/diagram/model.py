"""What the diagram draws: functions, sources, deployments, alarm groups, topics, scheduled checks,
watchers and the arrows between them; and the CloudFormation types that classify a stack's resources.
"""

from __future__ import annotations

from dataclasses import dataclass

CFN_TYPE = "aws:cdk:cloudformation:type"
CFN_ID = "aws:cdk:cloudformation:logicalId"
CFN_PROPS = "aws:cdk:cloudformation:props"
# jsii reports the nearest library type, so a Python subclass of Stack still shows this fqn.
STACK_FQNS = frozenset({"aws-cdk-lib.Stack", "@aws-cdk/core.Stack"})

LAMBDA = "AWS::Lambda::Function"
ALIAS = "AWS::Lambda::Alias"
VERSION = "AWS::Lambda::Version"
RULE = "AWS::Events::Rule"
TOPIC = "AWS::SNS::Topic"
QUEUE = "AWS::SQS::Queue"
ALARM = "AWS::CloudWatch::Alarm"
COMPOSITE = "AWS::CloudWatch::CompositeAlarm"
DEPLOYMENT_GROUP = "AWS::CodeDeploy::DeploymentGroup"
ROLE = "AWS::IAM::Role"
POLICIES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
API_KINDS = {
    "AWS::ApiGateway::RestApi": "API Gateway REST API",
    "AWS::ApiGatewayV2::Api": "API Gateway HTTP API",
}
# An API reaches a function through these; their `restApiId` / `apiId` names the API.
API_INTEGRATIONS = frozenset({"AWS::ApiGateway::Method", "AWS::ApiGatewayV2::Integration"})
DOMAINS = frozenset({"AWS::ApiGateway::DomainName", "AWS::ApiGatewayV2::DomainName"})
DOMAIN_MAPPINGS = frozenset({"AWS::ApiGateway::BasePathMapping", "AWS::ApiGatewayV2::ApiMapping"})
# What event-source mappings read from: (source kind, label).
STREAM_KINDS = {
    QUEUE: ("queue", "SQS queue"),
    "AWS::Kinesis::Stream": ("stream", "Kinesis stream"),
    "AWS::DynamoDB::Table": ("stream", "DynamoDB stream"),
}
ALARM_ACTIONS = ("alarmActions", "okActions", "insufficientDataActions")


class DiagramError(Exception):
    """The tree cannot be drawn: missing or invalid file, or no such stack. main() exits 2 with it."""


# Records only: `duplicates` pairs their field lists with other records' by shape; no logic repeats.
@dataclass(frozen=True)
class Function:
    """An application function: a Lambda function that has an alias (traffic goes to the alias)."""

    key: str  # construct path of the function inside the stack, e.g. "Worker/Function"
    name: str  # the construct holding both function and alias, e.g. "Worker"
    alias: str  # the alias's name, e.g. "live"
    runtime: str
    memory_mb: int | None
    alias_id: str  # the alias's logical ID (what references to it name; never drawn)


@dataclass(frozen=True)
class Source:
    """Something in front of a function: an API, a queue or stream, a rule, a custom domain, a DLQ."""

    key: str
    kind: str  # "domain" | "api" | "queue" | "stream" | "dead-letter queue" | "schedule" | "event rule"
    detail: str  # e.g. "SQS queue", "EventBridge rate(1 hour)", the domain name


@dataclass(frozen=True)
class Hook:
    key: str
    name: str  # path relative to the deployment group's owner construct, e.g. "PreTrafficHook"
    stage: str  # "pre-traffic" | "post-traffic" | "hook"


@dataclass(frozen=True)
class Deployment:
    """A CodeDeploy deployment group, its hooks, and the function whose alias it shifts (None: unknown)."""

    key: str
    function: str | None
    config: str
    hooks: tuple[Hook, ...]


@dataclass(frozen=True)
class AlarmGroup:
    """The alarms one construct owns, e.g. every alarm under "BackendApiAlarms"."""

    key: str
    alarms: int
    composites: int
    composite_inputs: int  # alarms the composites combine
    subject: str | None  # key of the function or check most of its alarms watch (None: none of them)
    topics: tuple[str, ...]

    @property
    def label(self) -> str:
        parts = [_plural(self.alarms, "alarm")] if self.alarms else []
        if self.composites:
            parts.append(_plural(self.composites, "composite alarm"))
        return f"{self.key}: {', '.join(parts)}"


@dataclass(frozen=True)
class Topic:
    key: str
    subscribers: tuple[str, ...]  # protocols, e.g. ("email", "Slack")


@dataclass(frozen=True)
class Check:
    """A scheduled function that is not an application function or hook, e.g. a drift or health check."""

    key: str
    watches: tuple[str, ...]  # names of the functions and sources its properties refer to


@dataclass(frozen=True)
class Watcher:
    """An event-pattern rule whose target is a topic, e.g. an alert on out-of-band changes."""

    key: str
    sources: tuple[str, ...]  # the pattern's event sources, e.g. ("aws.lambda",)
    watches: tuple[str, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "invokes" | "routes" | "redrive" | "deploys" | "rollback" | "notifies"
    label: str = ""


@dataclass(frozen=True)
class Model:
    """What one stack's picture shows. Tuples are in drawing order; functions request path first."""

    stack: str
    functions: tuple[Function, ...]
    checks: tuple[Check, ...]
    sources: tuple[Source, ...]
    deployments: tuple[Deployment, ...]
    alarm_groups: tuple[AlarmGroup, ...]
    topics: tuple[Topic, ...]
    watchers: tuple[Watcher, ...]
    edges: tuple[Edge, ...]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
