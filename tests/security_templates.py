"""Reading the synthesized app's templates for the security tests (tests/test_security.py,
tests/test_security_acknowledgements.py): each environment's config and templates, and one resource with
what the checks need of it (_Resource).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import CfnResource

from stacks.config import EnvironmentConfig

ENVS = ("staging", "prod")


def _config(synthesized: dict[str, Any], env: str) -> EnvironmentConfig:
    return synthesized["stacks"][env].config


def _tpl(synthesized: dict[str, Any], name: str) -> dict[str, Any]:
    return json.loads((Path(synthesized["outdir"]) / f"{name}.template.json").read_text())


def _backend(synthesized: dict[str, Any], env: str) -> dict[str, Any]:
    return _tpl(synthesized, f"credmate-backend-{env}")


def _policy(synthesized: dict[str, Any], env: str) -> dict[str, Any]:
    return _tpl(synthesized, f"credmate-backend-{env}-policy")


def _of_type(tpl: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == type_}


class _Resource:
    """One template resource with what the fact checks need."""

    def __init__(self, synthesized: dict[str, Any], stack_name: str, logical_id: str) -> None:
        env = stack_name.removeprefix("credmate-backend-").removesuffix("-policy")
        self.env, self.stack_name, self.logical_id = env, stack_name, logical_id
        self.config = _config(synthesized, env)
        self.tpl = _tpl(synthesized, stack_name)
        self.res = self.tpl["Resources"][logical_id]
        self.props = self.res.get("Properties", {})
        stack = (synthesized["policies"] if stack_name.endswith("-policy") else synthesized["stacks"])[env]
        self.path = next(
            x.node.path
            for x in stack.node.find_all()
            if isinstance(x, CfnResource) and stack.resolve(x.logical_id) == logical_id
        )

    def function_config(self) -> Any:
        """The catalog function this resource belongs to (its construct ID is the catalog name)."""
        return self.config.function_named(self.path.split("/")[1])

    def role_statements(self) -> list[dict[str, Any]]:
        """The statements of this policy, or of every policy attached to this role/function's role."""
        if self.res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            return list(self.props["PolicyDocument"]["Statement"])
        role = self.logical_id
        if self.res["Type"] == "AWS::Lambda::Function":
            role = self.props["Role"]["Fn::GetAtt"][0]
        out = []
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for p in _of_type(self.tpl, type_).values():
                if {"Ref": role} in p["Properties"].get("Roles", []):
                    out += p["Properties"]["PolicyDocument"]["Statement"]
        return out


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return a if isinstance(a, list) else [a]
