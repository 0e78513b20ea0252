/**
 * A Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC and Node authorization,
 * service-account token signing), kube-controller-manager (Jobs, CronJobs, garbage collection,
 * service accounts, ...), kube-scheduler, and kwok simulating two nodes (pods bound to them reach
 * Running), with the VolumeSnapshot CRDs installed. Certificates are made with the openssl CLI.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiextensionsV1Api, CoreV1Api, KubeConfig, loadYaml, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { binary, filesOf, type Log } from './build.ts';
import { exec, freePort, launch, waitFor, type Proc } from './proc.ts';
import type { StartOpts } from './s3.ts';

export const KWOK_NODES = ['kwok-node-0', 'kwok-node-1'];

const KCM_CONTROLLERS = [
  'serviceaccount-controller',
  'root-ca-certificate-publisher-controller',
  'clusterrole-aggregation-controller',
  'namespace-controller',
  'garbage-collector-controller',
  'pod-garbage-collector-controller',
  'job-controller',
  'cronjob-controller',
  'ttl-after-finished-controller',
  'replicaset-controller',
  'deployment-controller',
  'statefulset-controller',
  'daemonset-controller',
  'disruption-controller',
  'endpoints-controller',
  'endpointslice-controller',
  'node-lifecycle-controller',
  'taint-eviction-controller',
  'persistentvolume-binder-controller',
  'persistentvolume-protection-controller',
  'persistentvolumeclaim-protection-controller',
];

export interface K8sEnv {
  /** the admin kubeconfig (client certificate in system:masters) */
  kubeconfig: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** the cluster CA certificate (PEM) */
  caPem: string;
  nodes: string[];
  dir: string;
  procs: Proc[];
  env: Record<string, string>;
  /** a client configuration for the admin kubeconfig */
  kubeConfig(): KubeConfig;
  /** a client configuration that authenticates with a bearer token (a service account's, say) */
  tokenConfig(token: string): KubeConfig;
  stop(): Promise<void>;
}

interface Cert {
  key: string;
  crt: string;
}

async function pki(dir: string): Promise<{ ca: Cert; server: Cert; admin: Cert; kcm: Cert; scheduler: Cert; saKey: string; saPub: string }> {
  await fsp.mkdir(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', '-new', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-subj', '/CN=meshback-testenv-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], dir);
  const leaf = async (name: string, subj: string, ext: string[]): Promise<Cert> => {
    await fsp.writeFile(path.join(dir, `${name}.ext`), ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', ...ext].join('\n') + '\n');
    await exec('openssl', ['req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj], dir);
    await exec('openssl', ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-out', `${name}.crt`, '-days', '3650', '-extfile', `${name}.ext`], dir);
    return { key: path.join(dir, `${name}.key`), crt: path.join(dir, `${name}.crt`) };
  };
  const server = await leaf('apiserver', '/CN=kube-apiserver', [
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
  ]);
  const admin = await leaf('admin', '/O=system:masters/CN=meshback-testenv-admin', ['extendedKeyUsage=clientAuth']);
  const kcm = await leaf('kube-controller-manager', '/CN=system:kube-controller-manager', ['extendedKeyUsage=clientAuth']);
  const scheduler = await leaf('kube-scheduler', '/CN=system:kube-scheduler', ['extendedKeyUsage=clientAuth']);
  await exec('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'sa.key'], dir);
  await exec('openssl', ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  return { ca: { key: path.join(dir, 'ca.key'), crt: path.join(dir, 'ca.crt') }, server, admin, kcm, scheduler, saKey: path.join(dir, 'sa.key'), saPub: path.join(dir, 'sa.pub') };
}

function kubeconfigJson(server: string, caCrt: string, user: string, cert: Cert): string {
  const b64 = (f: string): string => readFileSync(f).toString('base64');
  return (
    JSON.stringify(
      {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'meshback-testenv', cluster: { server, 'certificate-authority-data': b64(caCrt) } }],
        users: [{ name: user, user: { 'client-certificate-data': b64(cert.crt), 'client-key-data': b64(cert.key) } }],
        contexts: [{ name: 'meshback-testenv', context: { cluster: 'meshback-testenv', user } }],
        'current-context': 'meshback-testenv',
      },
      null,
      2,
    ) + '\n'
  );
}

function httpsStatus(url: string, ca: string, cert: Cert): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: readFileSync(ca), cert: readFileSync(cert.crt), key: readFileSync(cert.key), timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function code(e: unknown): number | undefined {
  return (e as { code?: number }).code;
}

export async function startK8s(o: StartOpts = {}): Promise<K8sEnv> {
  const mode = o.mode ?? 'owned';
  const log: Log = o.log ?? ((l) => process.stderr.write(l + '\n'));
  const t0 = performance.now();
  // phase lines only for the CLI (o.log given); tests stay quiet unless something must be built
  const phase = (what: string): void => o.log?.(`testenv: k8s: ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const bins: Record<string, string> = {};
  for (const b of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok']) bins[b] = await binary(b, log);
  const crds = await filesOf('snapshot-crds', log);
  const stages = await filesOf('kwok', log);
  const dir = o.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-testenv-k8s-')));
  await fsp.mkdir(path.join(dir, 'logs'), { recursive: true });
  const procs: Proc[] = [];
  const stop = async (): Promise<void> => {
    // everything but etcd at once, then etcd
    await Promise.all(procs.filter((p) => p.name !== 'etcd').map((p) => p.stop()));
    await Promise.all(procs.filter((p) => p.name === 'etcd').map((p) => p.stop()));
    if (o.dir === undefined) await fsp.rm(dir, { recursive: true, force: true });
  };
  const start = (name: string, args: string[]): Proc => {
    const p = launch({ name, cmd: bins[name]!, args, log: path.join(dir, 'logs', `${name}.log`), mode, ...(mode === 'owned' ? { cleanup: dir } : {}) });
    procs.push(p);
    return p;
  };
  try {
    const certs = await pki(path.join(dir, 'pki'));
    phase('certificates made');
    const [etcdPort, etcdPeer, apiPort, kcmPort, schedPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcd = start('etcd', [
      '--name=default',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await waitFor('etcd to be healthy', 30_000, [etcd], async () => {
      const r = await fetch(`${etcdUrl}/health`);
      return r.ok && ((await r.json()) as { health?: string }).health === 'true' ? true : undefined;
    });
    phase(`etcd healthy on ${etcdUrl}`);
    const server = `https://127.0.0.1:${apiPort}`;
    const apiserver = start('kube-apiserver', [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${certs.server.crt}`,
      `--tls-private-key-file=${certs.server.key}`,
      `--client-ca-file=${certs.ca.crt}`,
      '--authorization-mode=Node,RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${certs.saPub}`,
      `--service-account-signing-key-file=${certs.saKey}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      `--cert-dir=${path.join(dir, 'pki')}`,
    ]);
    const admin = path.join(dir, 'admin.kubeconfig');
    await fsp.writeFile(admin, kubeconfigJson(server, certs.ca.crt, 'meshback-testenv-admin', certs.admin), { mode: 0o600 });
    const kcmConf = path.join(dir, 'kube-controller-manager.kubeconfig');
    await fsp.writeFile(kcmConf, kubeconfigJson(server, certs.ca.crt, 'system:kube-controller-manager', certs.kcm), { mode: 0o600 });
    const schedConf = path.join(dir, 'kube-scheduler.kubeconfig');
    await fsp.writeFile(schedConf, kubeconfigJson(server, certs.ca.crt, 'system:kube-scheduler', certs.scheduler), { mode: 0o600 });
    await waitFor('kube-apiserver to be ready', 90_000, [etcd, apiserver], async () => {
      const r = await httpsStatus(`${server}/readyz`, certs.ca.crt, certs.admin);
      return r.status === 200 ? true : undefined;
    });
    phase(`kube-apiserver ready on ${server}`);
    start('kube-controller-manager', [
      `--kubeconfig=${kcmConf}`,
      `--authentication-kubeconfig=${kcmConf}`,
      `--authorization-kubeconfig=${kcmConf}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
      `--cert-dir=${path.join(dir, 'pki', 'kcm')}`,
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${certs.saKey}`,
      `--root-ca-file=${certs.ca.crt}`,
      `--cluster-signing-cert-file=${certs.ca.crt}`,
      `--cluster-signing-key-file=${certs.ca.key}`,
      // what a backup controller meets in a cluster (workloads, Jobs, CronJobs, garbage collection,
      // namespaces, service accounts, volumes, node lifecycle); leaving out the rest (quota, autoscaling,
      // CSR signing, DRA, ...) halves the controller manager's start on two busy cores
      `--controllers=${KCM_CONTROLLERS.join(',')}`,
      '--cluster-name=meshback-testenv',
      '--profiling=false',
    ]);
    start('kube-scheduler', [
      `--kubeconfig=${schedConf}`,
      `--authentication-kubeconfig=${schedConf}`,
      `--authorization-kubeconfig=${schedConf}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      `--cert-dir=${path.join(dir, 'pki', 'scheduler')}`,
      '--leader-elect=false',
      '--profiling=false',
    ]);
    start('kwok', [
      `--kubeconfig=${admin}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--cidr=10.244.0.0/16',
      '--node-ip=127.0.0.1',
      ...stages.map((f) => `--config=${f}`),
    ]);
    const kc = new KubeConfig();
    kc.loadFromFile(admin);
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    for (const f of crds) {
      const body = loadYaml<V1CustomResourceDefinition>(await fsp.readFile(f, 'utf8'));
      await ext.createCustomResourceDefinition({ body }).catch((e: unknown) => {
        if (code(e) !== 409) throw e;
      });
    }
    for (const name of KWOK_NODES) {
      await core
        .createNode({
          body: {
            apiVersion: 'v1',
            kind: 'Node',
            metadata: {
              name,
              annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
              labels: { type: 'kwok', 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', 'node-role.kubernetes.io/agent': '' },
            },
            status: { capacity: { cpu: '16', memory: '64Gi', pods: '110' }, allocatable: { cpu: '16', memory: '64Gi', pods: '110' } },
          },
        })
        .catch((e: unknown) => {
          if (code(e) !== 409) throw e;
        });
    }
    await waitFor('the VolumeSnapshot CRDs to be established', 30_000, procs, async () => {
      const list = await ext.listCustomResourceDefinition();
      const established = list.items.filter((c) => c.spec.group === 'snapshot.storage.k8s.io' && (c.status?.conditions ?? []).some((x) => x.type === 'Established' && x.status === 'True'));
      return established.length >= 3 ? true : undefined;
    });
    phase('VolumeSnapshot CRDs established');
    await waitFor('the two kwok nodes to be Ready', 60_000, procs, async () => {
      const list = await core.listNode();
      const ready = list.items.filter((n) => KWOK_NODES.includes(n.metadata?.name ?? '') && (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'));
      return ready.length === KWOK_NODES.length ? true : undefined;
    });
    phase(`kwok nodes ${KWOK_NODES.join(', ')} Ready`);
    await waitFor('the default service account', 30_000, procs, async () => {
      await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      return true;
    });
    phase('the controller manager made the default service account');
    const caPem = await fsp.readFile(certs.ca.crt, 'utf8');
    return {
      kubeconfig: admin,
      server,
      caPem,
      nodes: [...KWOK_NODES],
      dir,
      procs,
      env: { KUBECONFIG: admin },
      kubeConfig: () => {
        const k = new KubeConfig();
        k.loadFromFile(admin);
        return k;
      },
      tokenConfig: (token: string) => {
        const k = new KubeConfig();
        k.loadFromOptions({
          clusters: [{ name: 'meshback-testenv', server, caData: Buffer.from(caPem).toString('base64') }],
          users: [{ name: 'token', token }],
          contexts: [{ name: 'token', cluster: 'meshback-testenv', user: 'token' }],
          currentContext: 'token',
        });
        return k;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
