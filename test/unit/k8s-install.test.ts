/**
 * The installation as data (no cluster): the chart's generated files and docs/k8s.md's RBAC tables
 * are what the code says (npm run chart writes them); the chart's values and version agree with
 * renderInstall's defaults and meshback's version; the least-privilege facts of the rendered RBAC
 * and pods; the CRD schemas; the CronJob render's schedule conversion, selector and policy file.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { staleChartFiles } from '../../scripts/chart.ts';
import { AGENT_RULES, CONTROLLER_RULES, NO_INJECTION, type BackupPolicy } from '../../src/k8s/api.ts';
import { customResourceDefinitions, DURATION_PATTERN, SCHEDULE_PATTERN } from '../../src/k8s/crds.ts';
import { cronJobName, cronOf, policyFileFor, renderCronJob, selectorMatches } from '../../src/k8s/cronjob.ts';
import { AGENT_CAPABILITIES, INSTALL_DEFAULTS, renderInstall } from '../../src/k8s/install.ts';
import { VERSION } from '../../src/cli/version.ts';
import { parsePolicyFile, policyNamed } from '../../src/policy/index.ts';
import { UsageError } from '../../src/errors/index.ts';

const CHART = path.resolve(import.meta.dirname, '../../charts/meshback');

describe('charts/meshback', () => {
  it("has the generated files the code gives (crds/, templates/_generated.tpl, docs/k8s.md's RBAC tables): npm run chart writes them", () => {
    assert.deepEqual(staleChartFiles(), [], "run 'npm run chart'");
  });
  it("has meshback's version and renderInstall's defaults", () => {
    const chart = parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string; apiVersion: string };
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.appVersion, VERSION);
    assert.equal(INSTALL_DEFAULTS.version, VERSION);
    const values = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
    assert.equal(values['image']!['repository'], INSTALL_DEFAULTS.imageRepository);
    assert.equal(values['image']!['pullPolicy'], INSTALL_DEFAULTS.imagePullPolicy);
    assert.deepEqual(values['controller'], INSTALL_DEFAULTS.controller);
    assert.deepEqual(values['agent'], INSTALL_DEFAULTS.agent);
    // the one documented difference: Helm makes the release namespace (--create-namespace), --render does
    assert.equal(values['createNamespace'], false);
    assert.equal(INSTALL_DEFAULTS.createNamespace, true);
  });
});

describe('renderInstall', () => {
  const objs = renderInstall();
  const find = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  it('grants the rules of api.ts, and no Secret to the controller, no list or watch of Secrets to the agent', () => {
    const strip = (rs: typeof CONTROLLER_RULES) => rs.map(({ why: _why, ...r }) => r);
    assert.deepEqual(find('ClusterRole', 'meshback-controller')['rules'], strip(CONTROLLER_RULES));
    assert.deepEqual(find('ClusterRole', 'meshback-agent')['rules'], strip(AGENT_RULES));
    assert.ok(!CONTROLLER_RULES.some((r) => r.resources.includes('secrets') || r.resources.includes('*') || r.verbs.includes('*')));
    for (const r of AGENT_RULES.filter((x) => x.resources.includes('secrets'))) assert.deepEqual(r.verbs, ['get']);
    assert.equal(find('ClusterRoleBinding', 'meshback-agent')['subjects'][0].namespace, 'meshback');
  });
  it('runs the controller unprivileged and the agent with its six capabilities, 512Mi, on every node, both out of mesh injection', () => {
    const ctl = find('Deployment', 'meshback-controller')['spec']['template'];
    const agent = find('DaemonSet', 'meshback-agent')['spec']['template'];
    assert.equal(ctl.spec.securityContext.runAsNonRoot, true);
    assert.deepEqual(ctl.spec.containers[0].securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } });
    assert.deepEqual(agent.spec.containers[0].securityContext.capabilities, { drop: ['ALL'], add: [...AGENT_CAPABILITIES] });
    assert.equal(agent.spec.containers[0].resources.limits.memory, '512Mi');
    assert.deepEqual(agent.spec.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(agent.spec.containers[0].volumeMounts[0], { name: 'kubelet', mountPath: '/var/lib/kubelet', mountPropagation: 'HostToContainer' });
    assert.deepEqual(agent.spec.containers[0].args, ['k8s', 'agent', '--node=$(NODE_NAME)', '--kubelet-root=/var/lib/kubelet', '--concurrency=2']);
    for (const t of [ctl, agent]) {
      assert.deepEqual(t.metadata.annotations, NO_INJECTION.annotations);
      for (const [k, v] of Object.entries(NO_INJECTION.labels)) assert.equal(t.metadata.labels[k], v);
    }
    const docs = readFileSync(path.resolve(import.meta.dirname, '../../docs/k8s.md'), 'utf8');
    for (const c of AGENT_CAPABILITIES) assert.match(docs, new RegExp(`\\| ${c} \\| \\w`), `docs/k8s.md says why the agent has ${c}`);
  });
  it('puts the namespace, image and concurrency where they belong', () => {
    const o = renderInstall({ namespace: 'backup', image: 'r/mb:9', createNamespace: false, agent: { concurrency: 4 } });
    assert.ok(!o.some((x) => x.kind === 'Namespace'));
    for (const x of o) if (!['CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(x.kind)) assert.equal(x.metadata.namespace, 'backup', x.kind);
    const ds = o.find((x) => x.kind === 'DaemonSet') as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(ds['spec'].template.spec.containers[0].image, 'r/mb:9');
    assert.ok(ds['spec'].template.spec.containers[0].args.includes('--concurrency=4'));
  });
});

describe('CRDs', () => {
  it('have status subresources, printer columns, short names, the meshback category, and phases as enums', () => {
    const crds = customResourceDefinitions();
    assert.deepEqual(crds.map((c) => c.spec.names.shortNames[0]), ['mbp', 'mvb', 'mvr']);
    for (const c of crds) {
      assert.deepEqual(c.spec.names.categories, ['meshback']);
      assert.deepEqual(c.spec.versions[0]!.subresources, { status: {} });
    }
    assert.deepEqual(crds[0]!.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name), ['Schedule', 'Strategy', 'RPO', 'Last Success', 'Age']);
    assert.deepEqual(crds[1]!.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name), ['Policy', 'PVC', 'Phase', 'Node', 'Snapshot', 'Bytes', 'Age']);
    assert.deepEqual(crds[2]!.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name), ['Snapshot', 'Target', 'Phase', 'RTO', 'Age']);
    assert.deepEqual(crds[1]!.spec.versions[0]!.schema.openAPIV3Schema.properties!['status']!.properties!['phase']!.enum, ['Pending', 'Snapshotting', 'Mounting', 'Queued', 'Running', 'Verifying', 'Completed', 'Failed']);
  });
  it('take the durations and schedules of meshback and refuse others', () => {
    const d = new RegExp(DURATION_PATTERN);
    for (const ok of ['30s', '15m', '1h30m', '7d', '250ms', '1.5h', '1y6mo']) assert.ok(d.test(ok), ok);
    for (const bad of ['', '15', 'soon', '1 h', '-1h']) assert.ok(!d.test(bad), bad);
    const s = new RegExp(SCHEDULE_PATTERN);
    for (const ok of ['every 15m', 'every 1h30m', '0 2 * * *', 'cron: 0 2 * * *', '*/5 * * * 1-5']) assert.ok(s.test(ok), ok);
    for (const bad of ['hourly', 'every', 'every soon', '0 2 * *', '']) assert.ok(!s.test(bad), bad);
  });
});

describe('the CronJob render', () => {
  it('turns a schedule into a CronJob schedule, or says what to write', () => {
    for (const [from, to] of [
      ['every 1m', '* * * * *'],
      ['every 15m', '*/15 * * * *'],
      ['every 1h', '0 * * * *'],
      ['every 60m', '0 * * * *'],
      ['every 6h', '0 */6 * * *'],
      ['every 24h', '0 0 * * *'],
      ['every 1d', '0 0 * * *'],
      ['0 2 * * *', '0 2 * * *'],
      ['cron: 30 1 * * 0', '30 1 * * 0'],
    ] as const) assert.equal(cronOf(from), to, from);
    for (const [bad, why] of [
      ['every 7m', /7 minutes do not divide an hour/],
      ['every 90s', /whole minutes/],
      ['every 5h', /5 hours do not divide a day/],
      ['every 2d', /longer than a day/],
      ['every 1h30m', /not whole hours/],
      ['0 0 2 * * *', /a CronJob has no seconds field/],
      ['cron: 99 * * * *', /must be a valid cron expression/],
    ] as const) assert.throws(() => cronOf(bad), (e: unknown) => e instanceof UsageError && why.test(e.message) && !e.message.includes('\n'), bad);
  });
  it('matches selectors as Kubernetes does', () => {
    assert.ok(selectorMatches(undefined, {}));
    assert.ok(selectorMatches({ matchLabels: { app: 'db' } }, { app: 'db', x: 'y' }));
    assert.ok(!selectorMatches({ matchLabels: { app: 'db' } }, { app: 'web' }));
    assert.ok(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['a', 'b'] }, { key: 'tmp', operator: 'DoesNotExist' }] }, { tier: 'b' }));
    assert.ok(!selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['b'] }] }, { tier: 'b' }));
    assert.ok(!selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, {}));
  });
  it('writes a policy file meshback run reads, and a CronJob that runs it with the PVC read-only', () => {
    const p = { apiVersion: 'meshback.io/v1alpha1', kind: 'BackupPolicy', metadata: { name: 'nightly', namespace: 'shop' }, spec: { schedule: '0 2 * * *', timeZone: 'Europe/Berlin', retention: { keepDaily: 7, keepLast: 0 }, rpo: '26h', repository: { secretRef: { name: 'repo' } } } } as BackupPolicy;
    const pol = policyNamed(parsePolicyFile(policyFileFor(p, 'data'), '/etc/meshback/policies.yaml'), 'nightly');
    assert.deepEqual(pol.sources, ['/data/data']);
    assert.deepEqual(pol.retention, { daily: 7 });
    assert.deepEqual(pol.tags, ['policy=nightly', 'namespace=shop', 'pvc=data']);
    assert.equal(pol.schedule?.kind === 'cron' ? pol.schedule.timezone : undefined, 'Europe/Berlin');
    const [cm, cj] = renderCronJob(p, 'data', { image: 'mb:1' }) as Record<string, any>[]; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(cm!['metadata'].name, cj!['metadata'].name);
    const spec = cj!['spec'];
    assert.equal(spec.timeZone, 'Europe/Berlin');
    assert.equal(spec.concurrencyPolicy, 'Forbid');
    const pod = spec.jobTemplate.spec.template;
    assert.equal(pod.spec.restartPolicy, 'Never');
    assert.deepEqual(pod.spec.volumes[0], { name: 'data', persistentVolumeClaim: { claimName: 'data', readOnly: true } });
    assert.deepEqual(pod.spec.containers[0].securityContext.capabilities, { drop: ['ALL'], add: ['DAC_READ_SEARCH'] });
    assert.equal(cronJobName('a'.repeat(40), 'b'.repeat(40)).length <= 52, true);
    assert.notEqual(cronJobName('a'.repeat(40), 'b'.repeat(40)), cronJobName('a'.repeat(40), 'b'.repeat(39) + 'c'));
  });
});
