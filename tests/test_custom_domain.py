"""The custom-domain switch (api.credentialmate.com): config, template, stack policy.

One full app is synthesized for this module with a custom domain in both environments: prod REGIONAL with
its Route 53 records, staging EDGE with DNS managed elsewhere. The committed cdk.json has none.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from scripts.pr_diff import summary as ds
from tests.cfn_lint import cfn_lint_errors

PROD_CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/0b6c9e2e-5a8e-4b8e-9c1e-0123456789ab"
EDGE_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/1c7d0f3f-6b9f-4c9f-8d2f-0123456789ab"
# docs/migration-from-sam.md hands these to `cdk import`: renaming them breaks the documented migration.
DOMAIN_ID = "CustomDomain50EDADAC"
MAPPING_ID = "CustomDomainRootMapping376FA43B"


@pytest.fixture(scope="module")
def domain_app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import aws_cdk as cdk

    from app import build_app, write_policies
    from tests.conftest import REPO_ROOT

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    envs = context["environments"]
    envs["prod"] = {
        **envs["prod"],
        "account": "123456789012",
        "region": "eu-west-1",
        "custom_domain": {
            "domain_name": "api.credentialmate.com",
            "certificate_arn": PROD_CERT,
            "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
            "hosted_zone_name": "credentialmate.com",
        },
        # The name is this stack's own API: only the name answers, and the checks go through it.
        "security": {**envs["prod"]["security"], "disable_execute_api_endpoint": True},
    }
    envs["staging"] = {
        **envs["staging"],
        # Staging as prod looks mid-migration: the name still serves the SAM API, the schedule is off.
        "functions": {"CampaignScheduler": {"trigger": {"enabled": False}}},
        "custom_domain": {
            "domain_name": "api.staging.credentialmate.com",
            "certificate_arn": EDGE_CERT,
            "endpoint_type": "EDGE",
            "mapped_api": {"rest_api_id": "a1b2c3d4e5", "stage": "Prod"},
        },
    }
    outdir = tmp_path_factory.mktemp("cdk-out-domain")
    app = cdk.App(context=context, outdir=str(outdir))
    stacks, policies = build_app(app)
    app.synth()  # cdk-nag included: a custom domain must not bring unacknowledged findings
    write_policies(outdir, policies)
    return {"outdir": outdir, "stacks": stacks}


def _template(app: dict[str, Any], env: str) -> dict[str, Any]:
    path = Path(app["outdir"]) / f"credmate-backend-{env}.template.json"
    return json.loads(path.read_text())


def test_prod_maps_the_name_at_the_root_to_the_api_stage(domain_app: dict[str, Any]) -> None:
    tpl = Template.from_json(_template(domain_app, "prod"))
    # THEN a regional TLS 1.2 domain with the configured certificate, retained if it ever leaves the template
    tpl.has_resource(
        "AWS::ApiGateway::DomainName",
        {
            "Properties": {
                "DomainName": "api.credentialmate.com",
                "RegionalCertificateArn": PROD_CERT,
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                "SecurityPolicy": "TLS_1_2",
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    # AND one root mapping (no base path: paths reach Mangum unprefixed) to this API's deployed stage
    tpl.resource_count_is("AWS::ApiGateway::BasePathMapping", 1)
    tpl.has_resource(
        "AWS::ApiGateway::BasePathMapping",
        {
            "Properties": {
                "DomainName": {"Ref": DOMAIN_ID},
                "RestApiId": {"Ref": "ApiF70053CD"},
                "Stage": {"Ref": Match.string_like_regexp("^ApiDeploymentStagev1")},
                "BasePath": Match.absent(),
            },
            "DeletionPolicy": "Retain",
        },
    )


def test_with_execute_api_disabled_the_checks_go_through_the_name(domain_app: dict[str, Any]) -> None:
    """prod: its own domain and `security.disable_execute_api_endpoint`; staging: a mapped domain, so its
    execute-api URL stays on and its checks keep calling the stage URL."""
    prod, staging = _template(domain_app, "prod"), _template(domain_app, "staging")

    def api_urls(tpl: dict[str, Any]) -> list[str]:
        return [
            json.dumps(v["Properties"]["Environment"]["Variables"])
            for v in tpl["Resources"].values()
            if v["Type"] == "AWS::Lambda::Function"
            and any(
                k in v["Properties"].get("Environment", {}).get("Variables", {})
                for k in ("API_URL", "HEALTH_URL")
            )
        ]

    (api,) = [v for v in prod["Resources"].values() if v["Type"] == "AWS::ApiGateway::RestApi"]
    assert api["Properties"]["DisableExecuteApiEndpoint"] is True
    urls = api_urls(prod)
    assert len(urls) >= 2  # the post-traffic hook and the scheduled health check
    assert all("https://api.credentialmate.com/" in u and "execute-api" not in u for u in urls), urls
    (staging_api,) = [v for v in staging["Resources"].values() if v["Type"] == "AWS::ApiGateway::RestApi"]
    assert staging_api["Properties"].get("DisableExecuteApiEndpoint") in (None, False)
    assert all("execute-api" in u for u in api_urls(staging))


def test_prod_owns_its_alias_records(domain_app: dict[str, Any]) -> None:
    tpl = Template.from_json(_template(domain_app, "prod"))
    for record_type in ("A", "AAAA"):
        tpl.has_resource_properties(
            "AWS::Route53::RecordSet",
            {
                "Name": "api.credentialmate.com.",
                "Type": record_type,
                "HostedZoneId": "Z0123456789ABCDEFGHIJ",
                "AliasTarget": {
                    "DNSName": {"Fn::GetAtt": [DOMAIN_ID, "RegionalDomainName"]},
                    "HostedZoneId": {"Fn::GetAtt": [DOMAIN_ID, "RegionalHostedZoneId"]},
                },
            },
        )
    outputs = _template(domain_app, "prod")["Outputs"]
    assert any(o.get("Value") == "https://api.credentialmate.com/" for o in outputs.values())


def test_staging_edge_domain_leaves_dns_alone(domain_app: dict[str, Any]) -> None:
    tpl = Template.from_json(_template(domain_app, "staging"))
    tpl.has_resource_properties(
        "AWS::ApiGateway::DomainName",
        {
            "DomainName": "api.staging.credentialmate.com",
            "CertificateArn": EDGE_CERT,
            "EndpointConfiguration": {"Types": ["EDGE"]},
            # TLS 1.0/1.1 refused on the edge-optimized name too (clients send bearer tokens).
            "SecurityPolicy": "TLS_1_2",
        },
    )
    tpl.resource_count_is("AWS::Route53::RecordSet", 0)
    outputs = _template(domain_app, "staging")["Outputs"]
    targets = [o for o in outputs.values() if "must point" in o.get("Description", "")]
    assert targets and targets[0]["Value"] == {"Fn::GetAtt": [DOMAIN_ID, "DistributionDomainName"]}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_domain_and_mapping_keep_their_logical_ids_and_stack_policy(
    domain_app: dict[str, Any], env: str
) -> None:
    tpl = _template(domain_app, env)
    assert tpl["Resources"][DOMAIN_ID]["Type"] == "AWS::ApiGateway::DomainName"
    assert tpl["Resources"][MAPPING_ID]["Type"] == "AWS::ApiGateway::BasePathMapping"
    policy = json.loads(
        (Path(domain_app["outdir"]) / f"credmate-backend-{env}.stack-policy.json").read_text()
    )
    denied = {
        r
        for s in policy["Statement"]
        if s["Effect"] == "Deny" and "Update:Replace" in s["Action"]
        for r in s.get("Resource", [])
    }
    assert f"LogicalResourceId/{DOMAIN_ID}" in denied and f"LogicalResourceId/{MAPPING_ID}" in denied


def test_domain_templates_pass_cfn_lint(domain_app: dict[str, Any]) -> None:
    out = Path(domain_app["outdir"])
    errors = cfn_lint_errors(*(out / f"credmate-backend-{env}.template.json" for env in ("staging", "prod")))
    assert errors == [], errors


def test_committed_config_has_no_custom_domain(synthesized: dict[str, Any]) -> None:
    for env in ("staging", "prod"):
        tpl = json.loads((Path(synthesized["outdir"]) / f"credmate-backend-{env}.template.json").read_text())
        types = {r["Type"] for r in tpl["Resources"].values()}
        assert "AWS::ApiGateway::DomainName" not in types and "AWS::ApiGateway::BasePathMapping" not in types


def test_mid_migration_the_name_serves_the_mapped_api_and_the_schedule_is_off(
    domain_app: dict[str, Any],
) -> None:
    tpl = _template(domain_app, "staging")
    mapping = tpl["Resources"][MAPPING_ID]
    assert mapping["Properties"]["RestApiId"] == "a1b2c3d4e5"
    assert mapping["Properties"]["Stage"] == "Prod"
    assert "BasePath" not in mapping["Properties"]
    rules = [
        r["Properties"]
        for lid, r in tpl["Resources"].items()
        if r["Type"] == "AWS::Events::Rule" and lid.startswith("CampaignSchedule")
    ]
    assert [r["State"] for r in rules] == ["DISABLED"], "two schedulers would send every campaign twice"
    names = [lid for lid, r in tpl["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert not [n for n in names if "MissedRuns" in n], "no MissedRuns alarm while the schedule is off"
    prod = _template(domain_app, "prod")
    assert [lid for lid in prod["Resources"] if "MissedRuns" in lid], "prod keeps its MissedRuns alarm"


def _domain_stack(mapped: bool) -> dict[str, Any]:
    """Just the API and its custom domain in a small stack: the switch without a full synth."""
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw

    from stacks.config import CustomDomainSettings, MappedApi
    from stacks.constructs.custom_domain import ApiCustomDomain

    stack = cdk.Stack(cdk.App(), "switch", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    api = apigw.RestApi(stack, "Api", deploy_options=apigw.StageOptions(stage_name="v1"))
    api.root.add_method("GET")
    settings = CustomDomainSettings(
        domain_name="api.credentialmate.com",
        certificate_arn=PROD_CERT,
        mapped_api=MappedApi(rest_api_id="a1b2c3d4e5", stage="Prod") if mapped else None,
    )
    ApiCustomDomain(stack, "CustomDomain", settings=settings, api=api, stage=api.deployment_stage)
    return dict(Template.from_stack(stack).to_json())


def test_removing_mapped_api_switches_the_name_in_place() -> None:
    # GIVEN the name mapped to the SAM API, WHEN mapped_api is removed from cdk.json
    before, after = _domain_stack(mapped=True), _domain_stack(mapped=False)
    changes = {c.logical_id: c for c in ds.resource_changes(before, after, None)}
    # THEN the same mapping resource is modified in place (UpdateBasePathMapping: no gap), nothing is
    # replaced or removed, and the domain itself is untouched
    mapping = [lid for lid in changes if lid.startswith("CustomDomainRootMapping")]
    assert len(mapping) == 1 and changes[mapping[0]].kind == "modified"
    assert not [c for c in changes.values() if c.kind in ("replaced", "removed")]
    assert not [lid for lid in changes if lid.startswith("CustomDomainDomain") or lid == DOMAIN_ID]
    props = after["Resources"][mapping[0]]["Properties"]
    assert props["RestApiId"] == {
        "Ref": next(
            k
            for k in after["Resources"]
            if k.startswith("Api") and after["Resources"][k]["Type"] == "AWS::ApiGateway::RestApi"
        )
    }


def test_changing_the_base_path_would_be_a_replacement() -> None:
    before = _domain_stack(mapped=False)
    after = copy.deepcopy(before)
    (lid,) = [k for k, r in after["Resources"].items() if r["Type"] == "AWS::ApiGateway::BasePathMapping"]
    after["Resources"][lid]["Properties"]["BasePath"] = "v2"
    (change,) = [c for c in ds.resource_changes(before, after, None) if c.logical_id == lid]
    assert change.kind == "replaced"


def test_migration_doc_names_the_real_logical_ids_keys_and_targets() -> None:
    import re

    from tests.conftest import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "migration-from-sam.md").read_text()
    # `cdk import` needs exactly these IDs: a renamed construct would make the documented import fail.
    assert DOMAIN_ID in doc and MAPPING_ID in doc
    assert "credmate-lambda-prod" in doc and "credmate-backend-prod" in doc
    for key in ("mapped_api", "enabled", "certificate_arn", "endpoint_type"):
        assert f'"{key}"' in doc, key
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))
    used = set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", doc, re.M))
    assert used and used <= targets, f"not Makefile targets: {sorted(used - targets)}"
