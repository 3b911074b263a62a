"""The API's public name: an API Gateway custom domain mapped at its root to the API's stage.

Clients call `https://api.credentialmate.com/<route>`; only this construct knows which REST API answers.
Moving the name from the SAM stack to this one without downtime is docs/migration-from-sam.md: the
domain and mapping are imported (`cdk import`) after an atomic re-point, so their logical IDs
(`CustomDomain50EDADAC`, `CustomDomainRootMapping376FA43B`; tests/test_custom_domain.py pins them) are part of
that procedure and must never change.

Both are retained when they leave the template: removing `custom_domain` from cdk.json, or deleting the stack,
must never take the public name down (a DNS name that stops resolving is an outage for every client and a
fresh certificate validation to get it back).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as r53_targets
from constructs import Construct

from stacks.config import CustomDomainSettings


class ApiCustomDomain(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: CustomDomainSettings,
        api: apigw.RestApi,
        stage: apigw.Stage,
    ) -> None:
        super().__init__(scope, construct_id)
        endpoint = (
            apigw.EndpointType.EDGE if settings.endpoint_type == "EDGE" else apigw.EndpointType.REGIONAL
        )
        self.domain = apigw.DomainName(
            self,
            "Domain",
            domain_name=settings.domain_name,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", settings.certificate_arn),
            endpoint_type=endpoint,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        self.domain.apply_removal_policy(RemovalPolicy.RETAIN)
        # The root mapping (no base path): paths reach the backend as they did under SAM, with no prefix
        # for Mangum to strip.
        mapped = settings.mapped_api
        # One construct ID whichever API it points at, so one logical ID: removing mapped_api is an in-place
        # update of this mapping (API Gateway's UpdateBasePathMapping), which switches the name with no gap.
        self.mapping = apigw.BasePathMapping(
            self,
            "RootMapping",
            domain_name=self.domain,
            rest_api=api
            if mapped is None
            else apigw.RestApi.from_rest_api_id(self, "MappedApi", mapped.rest_api_id),
            stage=stage if mapped is None else None,
            attach_to_stage=mapped is None,
        )
        if mapped is not None:
            cfn_mapping = self.mapping.node.default_child
            assert isinstance(cfn_mapping, apigw.CfnBasePathMapping)
            cfn_mapping.stage = mapped.stage
        self.mapping.apply_removal_policy(RemovalPolicy.RETAIN)
        self.records: list[route53.RecordSet] = []
        if settings.hosted_zone_id and settings.hosted_zone_name:
            zone = route53.HostedZone.from_hosted_zone_attributes(
                self,
                "Zone",
                hosted_zone_id=settings.hosted_zone_id,
                zone_name=settings.hosted_zone_name,
            )
            target = route53.RecordTarget.from_alias(r53_targets.ApiGatewayDomain(self.domain))
            record_name = settings.domain_name
            self.records = [
                route53.ARecord(self, "AliasA", zone=zone, record_name=record_name, target=target),
                route53.AaaaRecord(self, "AliasAAAA", zone=zone, record_name=record_name, target=target),
            ]
        CfnOutput(self, "Url", value=f"https://{settings.domain_name}/", description="The API's public URL")
        CfnOutput(
            self,
            "DnsTarget",
            value=self.domain.domain_name_alias_domain_name,
            description=f"Where {settings.domain_name} must point (alias or CNAME) if DNS is elsewhere",
        )
