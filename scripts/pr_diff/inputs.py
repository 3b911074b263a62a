"""The PR diff summary's input files: templates, the stack policy, and each function asset's build_info.json.

Every error names the file and what it should be (DiffInputError).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.pr_diff.model import Template


class DiffInputError(ValueError):
    """An input file that is missing or is not what it should be; the message names the file."""


def asset_key(function_props: Mapping[str, Any]) -> str | None:
    """A function's code asset key: its S3Key without .zip (build_info.json is looked up by it)."""
    key = (function_props.get("Code") or {}).get("S3Key")
    return key.removesuffix(".zip") if isinstance(key, str) else None


def load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DiffInputError(f"{what} {path}: file not found") from None
    except OSError as err:
        raise DiffInputError(f"{what} {path}: cannot read it ({err.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DiffInputError(
            f"{what} {path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None


def load_template(path: Path, what: str = "template") -> dict[str, Any]:
    data = load_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise DiffInputError(
            f"{what} {path}: no 'Resources' object; is it a CloudFormation template "
            "(cdk.out/<stack>.template.json)?"
        )
    for lid, res in data["Resources"].items():
        if not isinstance(res, dict) or not isinstance(res.get("Type"), str):
            raise DiffInputError(f"{what} {path}: resource {lid!r} has no 'Type'")
    return data


def load_policy(path: Path) -> dict[str, Any]:
    data = load_json(path, "stack policy")
    statements = data.get("Statement") if isinstance(data, dict) else None
    if not isinstance(statements, list) or not all(
        isinstance(s, dict) and s.get("Effect") in ("Allow", "Deny") for s in statements
    ):
        raise DiffInputError(
            f'stack policy {path}: expected {{"Statement": [{{"Effect": "Allow"|"Deny", '
            "...}, ...]}} (a CloudFormation stack policy document)"
        )
    return data


def load_asset_info(cdk_out: Path, template: Template) -> dict[str, dict[str, Any]]:
    """build_info.json of each function's code asset in a cloud assembly, keyed by asset key.

    Assets are found from the resource's aws:asset:path metadata, else as asset.<key>[.zip]; a missing or
    unreadable asset is skipped (the reason then says "source/requirements" without telling them apart).
    """
    found: dict[str, dict[str, Any]] = {}
    for res in (template.get("Resources") or {}).values():
        props = res.get("Properties") or {}
        if res.get("Type") != "AWS::Lambda::Function" or not (key := asset_key(props)):
            continue
        meta_path = (res.get("Metadata") or {}).get("aws:asset:path")
        candidates = [cdk_out / meta_path] if isinstance(meta_path, str) else []
        candidates += [cdk_out / f"asset.{key}.zip", cdk_out / f"asset.{key}"]
        for candidate in candidates:
            info = _read_build_info(candidate)
            if info is not None:
                found[key] = info
                break
    return found


def _read_build_info(path: Path) -> dict[str, Any] | None:
    try:
        if path.is_dir():
            raw = (path / "build_info.json").read_text()
        elif path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                raw = archive.read("build_info.json").decode()
        else:
            return None
        data = json.loads(raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return data if isinstance(data, dict) else None
