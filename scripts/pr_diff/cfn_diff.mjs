#!/usr/bin/env node
// How CloudFormation will apply one template over another, as JSON, from @aws-cdk/cloudformation-diff:
// the library behind `cdk diff`, whose replacement rules come from the CloudFormation resource
// specification (per property: update in place, may replace, will replace) and follow references to
// replaced resources. scripts/pr_diff/summary.py adds this project's own judgement (stack policy, canaries,
// alarms) on top.
//
//     node scripts/pr_diff/cfn_diff.mjs OLD.template.json NEW.template.json
//
// Output: {"library": version, "resources": {logicalId: {...}}, "iam": {...}, "securityGroups": {...}}.
// Exit status 2: a file that cannot be read, or the library missing (the message says which).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { DifferenceCollection, TemplateDiff, fullDiff, version } = loadLibrary();

// A reference to a replaced resource is rewritten by the library as "<id> (replaced)" / "<id>(replaced)".
const REPLACED = /^(.+?) ?\(replaced\)$/;

function readTemplate(path, what) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail(`${what} ${path}: cannot read it (${err.code ?? err.message})`);
  }
  try {
    const data = JSON.parse(text);
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      fail(`${what} ${path}: not a JSON object`);
    }
    return data;
  } catch (err) {
    fail(`${what} ${path}: not valid JSON (${err.message})`);
  }
}

function loadLibrary() {
  try {
    const library = require('@aws-cdk/cloudformation-diff');
    return { ...library, version: require('@aws-cdk/cloudformation-diff/package.json').version };
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    fail('@aws-cdk/cloudformation-diff is not installed next to this script: run `make setup` (npm ci)');
  }
}

function fail(message) {
  process.stderr.write(`cfn_diff: error: ${message}\n`);
  process.exit(2);
}

/** Logical IDs that a (propagated) property value names as replaced. */
function replacedReferences(value, found = new Set()) {
  if (typeof value === 'string') {
    const match = REPLACED.exec(value);
    if (match) found.add(match[1]);
  } else if (Array.isArray(value)) {
    value.forEach((v) => replacedReferences(v, found));
  } else if (value !== null && typeof value === 'object') {
    Object.values(value).forEach((v) => replacedReferences(v, found));
  }
  return found;
}

function targets(t) {
  return { not: t.not, values: [...t.values] };
}

function statement(s) {
  return {
    effect: s.effect,
    actions: targets(s.actions),
    resources: targets(s.resources),
    principals: targets(s.principals),
    condition: s.condition ?? null,
    negative: s.isNegativeStatement,
    rendered: s.render(),
  };
}

function managedPolicy(m) {
  return { identityArn: m.identityArn, managedPolicyArn: m.managedPolicyArn };
}

function rule(r) {
  return { ...r.toJson(), protocol: r.describeProtocol(), peerText: r.describePeer() };
}

/** IAM and security-group changes of one resource difference alone: which resource said what. */
function scrutinize(logicalId, change) {
  const single = new TemplateDiff({ resources: new DifferenceCollection({ [logicalId]: change }) });
  return {
    statementAdditions: single.iamChanges.statements.additions.map(statement),
    statementRemovals: single.iamChanges.statements.removals.map(statement),
    managedPolicyAdditions: single.iamChanges.managedPolicies.additions.map(managedPolicy),
    managedPolicyRemovals: single.iamChanges.managedPolicies.removals.map(managedPolicy),
    ingressRuleAdditions: single.securityGroupChanges.ingress.additions.map(rule),
    ingressRuleRemovals: single.securityGroupChanges.ingress.removals.map(rule),
    egressRuleAdditions: single.securityGroupChanges.egress.additions.map(rule),
    egressRuleRemovals: single.securityGroupChanges.egress.removals.map(rule),
  };
}

function withSources(items, key, perResource) {
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  return items.map((item) => ({
    ...item,
    sources: Object.entries(perResource)
      .filter(([, found]) => found[key].some((other) => same(other, item)))
      .map(([logicalId]) => logicalId)
      .sort(),
  }));
}

function main(argv) {
  if (argv.length !== 2) fail('usage: cfn_diff.mjs OLD.template.json NEW.template.json');
  const oldTemplate = readTemplate(argv[0], 'old template');
  const newTemplate = readTemplate(argv[1], 'new template');
  const diff = fullDiff(oldTemplate, newTemplate);

  const resources = {};
  const perResource = {};
  diff.resources.forEachDifference((logicalId, change) => {
    const properties = {};
    for (const [name, prop] of Object.entries(change.propertyUpdates)) {
      properties[name] = {
        impact: prop.changeImpact ?? 'WILL_UPDATE',
        replacedReferences: [...replacedReferences(prop.newValue)].sort(),
      };
    }
    resources[logicalId] = {
      oldType: change.oldResourceType ?? null,
      newType: change.newResourceType ?? null,
      impact: change.changeImpact,
      properties,
      other: Object.keys(change.otherChanges).sort(),
    };
    perResource[logicalId] = scrutinize(logicalId, change);
  });

  const iam = diff.iamChanges;
  const sg = diff.securityGroupChanges;
  const result = {
    library: version,
    resources,
    iam: {
      broadened: iam.permissionsBroadened,
      statementAdditions: withSources(iam.statements.additions.map(statement), 'statementAdditions', perResource),
      statementRemovals: withSources(iam.statements.removals.map(statement), 'statementRemovals', perResource),
      managedPolicyAdditions: withSources(
        iam.managedPolicies.additions.map(managedPolicy), 'managedPolicyAdditions', perResource),
      managedPolicyRemovals: withSources(
        iam.managedPolicies.removals.map(managedPolicy), 'managedPolicyRemovals', perResource),
    },
    securityGroups: {
      ingressRuleAdditions: withSources(sg.ingress.additions.map(rule), 'ingressRuleAdditions', perResource),
      ingressRuleRemovals: withSources(sg.ingress.removals.map(rule), 'ingressRuleRemovals', perResource),
      egressRuleAdditions: withSources(sg.egress.additions.map(rule), 'egressRuleAdditions', perResource),
      egressRuleRemovals: withSources(sg.egress.removals.map(rule), 'egressRuleRemovals', perResource),
      // Every ingress rule of the old template (all "added" to an empty stack), shown beside a new rule.
      ingressRulesBefore: fullDiff({ Resources: {} }, oldTemplate).securityGroupChanges.ingress.additions.map(rule),
    },
  };
  process.stdout.write(JSON.stringify(result, null, 1) + '\n');
}

main(process.argv.slice(2));
