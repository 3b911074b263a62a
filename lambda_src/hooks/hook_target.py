"""Which function and version a CodeDeploy lifecycle hook tests: resolve_target, and find_target, its check.

One pre-traffic hook Lambda and one post-traffic hook Lambda serve every deployment group of an environment.
Nothing about the function under deployment is in the hook's environment (Lambda's 4 KB of variables could
not hold 60 functions): each execution finds it from the deployment itself (resolve_target below), then asks
that exact version what to check (the probe's `checks`, from the function's own CREDMATE_CHECKS variable,
parsed by hook_checks.function_checks). Least privilege is in IAM: the hooks may read and report to their
application's deployment groups only, and invoke exactly the versions the deployments publish.

Which function and version (resolve_target, one implementation for both hooks):

1. GetDeployment's `revision.appSpecContent.content` (YAML or JSON). The AppSpec of a Lambda deployment names
   one function resource: the one whose `Alias` is the hook's TARGET_ALIAS is taken (two are refused as
   ambiguous), with its `Name`, `CurrentVersion` and `TargetVersion`. GetDeployment gets only a share of the
   checks' time, so the second source and the checks keep theirs.
2. Else (AppSpec missing, unreadable, naming no such resource, or its TargetVersion refused):
   ListDeploymentTargets(deploymentId) and GetDeploymentTarget, whose
   `deploymentTarget.lambdaTarget.lambdaFunctionInfo` gives functionName, functionAlias, currentVersion and
   targetVersion (also with a share of the time). A CurrentVersion the AppSpec named stays refused.
3. Neither usable: Failed, with a reason naming both sources.

`$LATEST`, the alias, anything that is not a published version number, and the CurrentVersion (already
live) are never tested: testing them would pass a deployment whose new code was never run. An invocation's
ExecutedVersion must be the version asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import yaml
from botocore.exceptions import ReadTimeoutError
from hook_calls import MIN_ATTEMPT_SECONDS, Clients, Runtime, call_with_retry, describe, remaining
from hook_report import CheckResult, HookIds, HookLog

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------------------
# Which function and version: the AppSpec (JSON or YAML; PyYAML ships in the hook asset), else the
# deployment's target


class AppSpecError(ValueError):
    pass


def parse_appspec(content: str) -> Any:
    text = content.strip()
    if not text:
        raise AppSpecError("AppSpec content is empty")
    json_error = None
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            json_error = exc  # maybe flow-style YAML: PyYAML decides
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())[:300]
        if json_error is not None:
            raise AppSpecError(f"AppSpec JSON is invalid ({json_error}), and not YAML either") from exc
        raise AppSpecError(f"AppSpec YAML is invalid: {detail}") from exc
    if document is None:
        raise AppSpecError("AppSpec content has only comments")
    return document


@dataclass(frozen=True)
class AppSpecTarget:
    resource: str
    name: str | None
    alias: str | None
    current_version: str | None
    target_version: str | None


def texts(mapping: Mapping[str, Any], *keys: str) -> tuple[str | None, ...]:
    """The values of `keys` in `mapping` as text, None where a key is absent or null."""
    return tuple(None if mapping.get(key) is None else str(mapping.get(key)) for key in keys)


def appspec_targets(document: Any) -> list[AppSpecTarget]:
    if not isinstance(document, Mapping):
        raise AppSpecError("AppSpec is not a mapping")
    resources = document.get("Resources") or document.get("resources")
    if isinstance(resources, Mapping):
        resources = [{key: value} for key, value in resources.items()]
    if not isinstance(resources, list):
        raise AppSpecError("AppSpec has no Resources list")
    found = []
    for item in resources:
        if not isinstance(item, Mapping):
            continue
        for resource, body in item.items():
            props = body.get("Properties") if isinstance(body, Mapping) else None
            if not isinstance(props, Mapping):
                continue
            found.append(
                AppSpecTarget(
                    str(resource), *texts(props, "Name", "Alias", "CurrentVersion", "TargetVersion")
                )
            )
    return found


class TargetVersionError(ValueError):
    """No version to test; `function_name`/`current_version` keep what a refused source did say."""

    def __init__(
        self, message: str, *, function_name: str | None = None, current_version: str | None = None
    ) -> None:
        super().__init__(message)
        self.function_name = function_name
        self.current_version = current_version


@dataclass(frozen=True)
class DeploymentTarget:
    """The function and version a deployment shifts its alias to, and where that was read."""

    function_name: str
    version: str
    alias: str
    current_version: str | None
    source: Literal["AppSpec", "deployment target"]
    notes: tuple[str, ...] = ()  # why an earlier source was not used


_VERSION_NUMBER = re.compile(r"^[0-9]+$")


def function_name_of(value: str) -> str:
    """`name`, `name:qualifier` or an ARN `arn:aws:lambda:region:account:function:name[:qualifier]` → name."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 7:
        return parts[6]
    return parts[0]


def version_of(value: str) -> str:
    """A version number or the qualifier of a version ARN."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 8:
        return parts[7]
    return value.strip()


def version_problem(version: str | None, *, current: str | None, alias: str) -> str | None:
    if not version:
        return "no version given"
    if version == "$LATEST":
        return "$LATEST is never tested: CodeDeploy shifts traffic to a published version"
    if version == alias or not _VERSION_NUMBER.match(version):
        return f"'{version}' is not a published version number (an alias or $LATEST is never tested)"
    if current is not None and version == current:
        return f"version {version} is the CurrentVersion (already live), not the new one"
    return None


def _the_one_for(alias: str, items: Sequence[tuple[str | None, str, str, T]], *, none: str, many: str) -> T:
    """The one item deploying `alias`, from (alias, where, name, item) rows; TargetVersionError, worded by
    `none` ({named}: every row) or `many` ({count}, {names}), when there is none or more than one."""
    mine = [row for row in items if row[0] == alias]
    if not mine:
        named = ", ".join(f"{where} (alias {a})" for a, where, _n, _i in items) or "none"
        raise TargetVersionError(none.format(named=named))
    if len(mine) > 1:
        raise TargetVersionError(many.format(count=len(mine), names=", ".join(n for _a, _w, n, _i in mine)))
    return mine[0][3]


def target_from_appspec(targets: Sequence[AppSpecTarget], alias: str) -> DeploymentTarget:
    """The one function resource whose Alias is `alias`, and its TargetVersion; TargetVersionError if none."""
    entry = _the_one_for(
        alias,
        [(t.alias, t.resource, t.name or t.resource, t) for t in targets],
        none=f"names no function resource with Alias {alias} (resources: {{named}})",
        many=f"names {{count}} function resources with Alias {alias} ({{names}}): ambiguous, refused",
    )
    if not entry.name:
        raise TargetVersionError(f"resource {entry.resource} has no Name")
    function = function_name_of(entry.name)
    current = version_of(entry.current_version) if entry.current_version else None
    target = version_of(entry.target_version) if entry.target_version else None
    problem = version_problem(target, current=current, alias=alias)
    if problem is not None or target is None:
        raise TargetVersionError(
            f"TargetVersion of {function} refused: {problem}", function_name=function, current_version=current
        )
    return DeploymentTarget(function, target, alias, current, "AppSpec")


@dataclass(frozen=True)
class LambdaTargetInfo:
    """GetDeploymentTarget's deploymentTarget.lambdaTarget.lambdaFunctionInfo."""

    target_id: str
    function_name: str | None
    alias: str | None
    current_version: str | None
    target_version: str | None


def target_from_deployment_targets(
    infos: Sequence[LambdaTargetInfo],
    alias: str,
    *,
    known_function: str | None = None,
    known_current: str | None = None,
) -> DeploymentTarget:
    """The one Lambda target deploying `alias`. `known_*`: what a refused AppSpec said (still binding)."""
    info = _the_one_for(
        alias,
        [(i.alias, str(i.function_name), str(i.function_name), i) for i in infos],
        none=f"no Lambda target with alias {alias} (targets: {{named}})",
        many=f"{{count}} Lambda targets with alias {alias} ({{names}}): ambiguous, refused",
    )
    if not info.function_name:
        raise TargetVersionError(f"target {info.target_id} has no functionName")
    function = function_name_of(info.function_name)
    if known_function is not None and function != known_function:
        raise TargetVersionError(f"target {function} is not the AppSpec's function {known_function}")
    current = version_of(info.current_version) if info.current_version else None
    target = version_of(info.target_version) if info.target_version else None
    problem = version_problem(target, current=current, alias=alias)
    if problem is None and known_current is not None and target == known_current:
        problem = f"version {target} is the AppSpec's CurrentVersion (already live), not the new one"
    if problem is not None or target is None:
        raise TargetVersionError(f"targetVersion of {function} refused: {problem}")
    return DeploymentTarget(function, target, alias, current or known_current, "deployment target")


# Each source may use this much of the checks' time at most (and at most this share of what is left when
# it starts): when one is slow, the other and the checks still have the rest. A very short budget (local
# runs) still gives each source time for one attempt.
SOURCE_SECONDS = 20.0
SOURCE_SHARE = 0.25
SOURCE_MIN_SECONDS = 2 * MIN_ATTEMPT_SECONDS
SOURCE_ATTEMPT_SECONDS = 8.0
MAX_DEPLOYMENT_TARGETS = 10  # a Lambda deployment has one target; more is refused as ambiguous anyway


def _source_deadline(deadline: float, runtime: Runtime) -> float:
    left = remaining(deadline, runtime)
    share = max(SOURCE_MIN_SECONDS, min(SOURCE_SECONDS, left * SOURCE_SHARE))
    return runtime.clock() + min(left, share)


def read_appspec_targets(
    codedeploy_factory: Callable[[float], Any], deployment_id: str, *, deadline: float, runtime: Runtime
) -> tuple[list[AppSpecTarget] | None, str | None]:
    """(targets, problem): GetDeployment's AppSpec, or why it is unusable."""
    try:
        response = call_with_retry(
            lambda seconds: codedeploy_factory(seconds).get_deployment(deploymentId=deployment_id),
            what="GetDeployment",
            deadline=_source_deadline(deadline, runtime),
            runtime=runtime,
            max_attempt=SOURCE_ATTEMPT_SECONDS,
        )
    except ReadTimeoutError:
        return None, "GetDeployment did not answer within its share of the time budget"
    except Exception as exc:
        return None, f"GetDeployment failed: {describe(exc)}"
    info = response.get("deploymentInfo") if isinstance(response, Mapping) else None
    revision = info.get("revision") if isinstance(info, Mapping) else None
    content = revision.get("appSpecContent", {}).get("content") if isinstance(revision, Mapping) else None
    if not isinstance(content, str):
        return None, "GetDeployment returned no revision.appSpecContent.content"
    try:
        return appspec_targets(parse_appspec(content)), None
    except AppSpecError as exc:
        return None, str(exc)


def read_deployment_targets(
    codedeploy_factory: Callable[[float], Any], deployment_id: str, *, deadline: float, runtime: Runtime
) -> tuple[list[LambdaTargetInfo] | None, str | None]:
    """(targets, problem): ListDeploymentTargets + GetDeploymentTarget's Lambda function info, or why not."""
    own_deadline = _source_deadline(deadline, runtime)

    def call(what: str, method: str, **kwargs: Any) -> Any:
        return call_with_retry(
            lambda seconds: getattr(codedeploy_factory(seconds), method)(**kwargs),
            what=what,
            deadline=own_deadline,
            runtime=runtime,
            max_attempt=SOURCE_ATTEMPT_SECONDS,
        )

    target_ids: list[str] = []
    infos: list[LambdaTargetInfo] = []
    try:
        token: str | None = None
        while True:
            more = {"nextToken": token} if token else {}
            page = call(
                "ListDeploymentTargets", "list_deployment_targets", deploymentId=deployment_id, **more
            )
            target_ids += [t for t in page.get("targetIds") or [] if isinstance(t, str)]
            token = page.get("nextToken")
            if not token or len(target_ids) >= MAX_DEPLOYMENT_TARGETS:
                break
        if not target_ids:
            return None, "ListDeploymentTargets returned no targets"
        for target_id in target_ids[:MAX_DEPLOYMENT_TARGETS]:
            response = call(
                "GetDeploymentTarget", "get_deployment_target", deploymentId=deployment_id, targetId=target_id
            )
            target = response.get("deploymentTarget") if isinstance(response, Mapping) else None
            lambda_target = target.get("lambdaTarget") if isinstance(target, Mapping) else None
            info = lambda_target.get("lambdaFunctionInfo") if isinstance(lambda_target, Mapping) else None
            if not isinstance(info, Mapping):
                continue
            infos.append(
                LambdaTargetInfo(
                    target_id,
                    *texts(info, "functionName", "functionAlias", "currentVersion", "targetVersion"),
                )
            )
    except ReadTimeoutError:
        return None, "ListDeploymentTargets/GetDeploymentTarget did not answer within its share of the time"
    except Exception as exc:
        return None, f"{describe(exc)}"
    if not infos:
        return (
            None,
            f"GetDeploymentTarget gave no lambdaTarget.lambdaFunctionInfo for {', '.join(target_ids)}",
        )
    return infos, None


def resolve_target(
    codedeploy_factory: Callable[[float], Any],
    deployment_id: str,
    *,
    alias: str,
    deadline: float,
    runtime: Runtime,
) -> DeploymentTarget:
    """The function and version under deployment: the AppSpec, else the deployment's Lambda target."""
    appspec, problem = read_appspec_targets(
        codedeploy_factory, deployment_id, deadline=deadline, runtime=runtime
    )
    known_function = known_current = None
    if appspec is not None:
        try:
            return target_from_appspec(appspec, alias)
        except TargetVersionError as exc:
            problem, known_function, known_current = str(exc), exc.function_name, exc.current_version
    appspec_problem = f"AppSpec (GetDeployment): {problem}"
    infos, problem = read_deployment_targets(
        codedeploy_factory, deployment_id, deadline=deadline, runtime=runtime
    )
    if infos is not None:
        try:
            found = target_from_deployment_targets(
                infos, alias, known_function=known_function, known_current=known_current
            )
            return replace(found, notes=(appspec_problem,))
        except TargetVersionError as exc:
            problem = str(exc)
    raise TargetVersionError(
        f"{appspec_problem}; deployment target (ListDeploymentTargets/GetDeploymentTarget): {problem}"
    )


def find_target(
    clients: Clients, ids: HookIds, *, alias: str, deadline: float, runtime: Runtime, log: HookLog
) -> tuple[CheckResult, DeploymentTarget | None]:
    """resolve_target as the `target_version` check; the log carries the function and version from here."""
    try:
        target = resolve_target(
            clients.codedeploy, ids.deployment_id, alias=alias, deadline=deadline, runtime=runtime
        )
    except TargetVersionError as exc:
        return log.result(CheckResult("target_version", False, f"no version to test: {exc}")), None
    log.function, log.version = target.function_name, target.version
    note = f" ({'; '.join(target.notes)})" if target.notes else ""
    return log.result(
        CheckResult(
            "target_version",
            True,
            f"testing version {target.version} of {target.function_name} (alias {target.alias}) from the "
            f"{target.source}{note}; current version {target.current_version or 'unknown'}",
            warning=bool(target.notes),
        )
    ), target
