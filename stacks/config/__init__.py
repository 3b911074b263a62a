"""Typed, validated configuration for each environment, in parts a newcomer finds by file name:

- environment.py: an environment's settings (`environments.<env>` in cdk.json) as frozen values;
- security.py: the security settings (WAF, throttling, the login routes both protect) and their parser;
- catalog.py: the function catalog (`functions`) as frozen values, and how the API routes a path;
- reader.py: `ConfigError`, the readers, and the wording of every error (each names the key where the user
  wrote it);
- environment_parser.py, catalog_parser.py: the parsers; load.py: `parse_environments`, which app.py calls.

`app.py` is the only place that reads CDK context. Stacks and constructs only ever see these objects and
trust them: every check lives here. `from stacks.config import X` works for every public name below.
"""

# Re-exports: these lists of names repeat the parsers' imports of the same names (lists, not logic).
from stacks.config.catalog import (
    STACK_CONSTRUCT_IDS,
    TRIGGER_TYPES,
    UNIT_SUFFIXES,
    ApiTrigger,
    FunctionConfig,
    NoTrigger,
    PostTrafficSettings,
    ScheduleTrigger,
    SqsTrigger,
    Trigger,
    route_owner,
    unit_construct_ids,
)
from stacks.config.catalog_parser import parse_catalog_context, parse_functions
from stacks.config.environment import (
    CORS_HEADERS,
    CORS_METHODS,
    DEFAULT_CORS_ORIGINS,
    ENVIRONMENT_NAMES,
    LOG_RETENTION_DAYS,
    PREDEFINED_DEPLOYMENT_CONFIGS,
    SUPPORTED_RUNTIMES,
    AlarmSettings,
    AlarmThresholds,
    Architecture,
    CustomCanary,
    CustomDomainSettings,
    DeploymentSettings,
    EnvironmentConfig,
    FunctionSettings,
    GuardrailSettings,
    MappedApi,
    MigrationSettings,
    NetworkSettings,
    SchemaMismatchPolicy,
)
from stacks.config.load import parse_environment, parse_environments
from stacks.config.reader import PATH_RE, ConfigError
from stacks.config.security import (
    HTTP_METHODS,
    MethodLimit,
    SecuritySettings,
    ThrottleConfig,
    WafConfig,
)

__all__ = [
    "CORS_HEADERS",
    "CORS_METHODS",
    "DEFAULT_CORS_ORIGINS",
    "ENVIRONMENT_NAMES",
    "HTTP_METHODS",
    "LOG_RETENTION_DAYS",
    "PATH_RE",
    "PREDEFINED_DEPLOYMENT_CONFIGS",
    "STACK_CONSTRUCT_IDS",
    "SUPPORTED_RUNTIMES",
    "TRIGGER_TYPES",
    "UNIT_SUFFIXES",
    "AlarmSettings",
    "AlarmThresholds",
    "ApiTrigger",
    "Architecture",
    "ConfigError",
    "CustomCanary",
    "CustomDomainSettings",
    "DeploymentSettings",
    "EnvironmentConfig",
    "FunctionConfig",
    "FunctionSettings",
    "GuardrailSettings",
    "MappedApi",
    "MethodLimit",
    "MigrationSettings",
    "NetworkSettings",
    "NoTrigger",
    "PostTrafficSettings",
    "ScheduleTrigger",
    "SchemaMismatchPolicy",
    "SecuritySettings",
    "SqsTrigger",
    "ThrottleConfig",
    "Trigger",
    "WafConfig",
    "parse_catalog_context",
    "parse_environment",
    "parse_environments",
    "parse_functions",
    "route_owner",
    "unit_construct_ids",
]
