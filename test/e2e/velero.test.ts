/**
 * Velero itself (lab/testenv/velero.ts: the pinned 1.16 server, its AWS object-store plugin and
 * one node agent per kwok node, all local processes) on the test control plane with its
 * BackupStorageLocation on the test MinIO: a file-system backup (kopia uploader, in the node
 * agent's process) of a pod's volume, a real directory mounted where the kubelet would put the
 * pod's emptyDir, and a restore into a fresh namespace and a fresh volume with data identical by
 * SHA-256. The kubelet's part (mounting the volume, showing the restore-wait init container
 * running) is played by the harness, as kwok runs no kubelet.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { startK8s, startS3, type K8sEnv, type S3Env } from '../../lab/testenv/index.ts';
import { startVelero, type VeleroEnv } from '../../lab/testenv/velero.ts';
import { compareTrees } from '../../lab/gen/compare.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';
import { until } from '../helpers/until.ts';

const skip = process.getuid?.() === 0 ? false : 'needs root (bind mounts, mount namespaces for the node agents)';
if (skip !== false) console.error(`velero.test.ts: skipped: ${skip}`);

let work: string;
let s3: S3Env;
let k8s: K8sEnv;
let velero: VeleroEnv;

before(async () => {
  if (skip !== false) return;
  work = tmpdir('velero');
  s3 = await startS3();
  k8s = await startK8s();
  velero = await startVelero({ k8s, s3, bucket: s3.bucket, prefix: 'velero', dir: path.join(work, 'velero') });
});

after(async () => {
  await velero?.stop();
  await k8s?.stop();
  await s3?.stop();
  if (work !== undefined) await rmrf(work);
});

async function writeTree(dir: string): Promise<void> {
  for (let i = 0; i < 24; i++) {
    await fsp.mkdir(path.join(dir, `d${i % 3}`), { recursive: true });
    await fsp.writeFile(path.join(dir, `d${i % 3}`, `f${i}.dat`), i % 4 === 0 ? randomBytes(256 * 1024 + i) : Buffer.from(`record ${i};`.repeat(500 + i * 31)));
  }
  await fsp.symlink('d0/f0.dat', path.join(dir, 'link'));
}

test('velero: fs-backup of a pod volume on a kwok node and a restore into a fresh namespace and volume, SHA-256 identical', { skip, timeout: 600_000 }, async () => {
  const kc = k8s.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const src = path.join(work, 'src');
  const dst = path.join(work, 'dst');
  await fsp.mkdir(dst, { recursive: true });
  await writeTree(src);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  await core.createNamespacedPod({
    namespace: 'shop',
    body: {
      metadata: { name: 'orders-0', labels: { app: 'orders' } },
      spec: { nodeName: k8s.nodes[1]!, containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] }], volumes: [{ name: 'data', emptyDir: {} }] },
    },
  });
  const m = await velero.mountPodVolume('shop', 'orders-0', 'data', src);
  await until('pod orders-0 running', 30_000, async () => ((await core.readNamespacedPod({ namespace: 'shop', name: 'orders-0' })).status?.phase === 'Running' ? true : undefined));

  const phase = await velero.backup('b1', 'shop', 300_000);
  // the failures the server and the agents logged, and the volume operations' messages
  const logs = async (): Promise<string> => {
    const lines: string[] = [];
    for (const p of velero.procs) {
      const text = await fsp.readFile(p.log, 'utf8').catch(() => '');
      lines.push(...text.split('\n').filter((l) => /level=(error|fatal)/.test(l)).slice(-4).map((l) => `${p.name}: ${l.slice(0, 600)}`));
    }
    for (const plural of ['podvolumebackups', 'podvolumerestores']) {
      const list = (await custom.listNamespacedCustomObject({ group: 'velero.io', version: 'v1', namespace: 'velero', plural })) as { items: { metadata: { name: string }; status?: { phase?: string; message?: string } }[] };
      for (const i of list.items) lines.push(`${plural}/${i.metadata.name}: ${i.status?.phase ?? 'New'} ${i.status?.message ?? ''}`);
    }
    return lines.join('\n');
  };
  assert.equal(phase, 'Completed', `backup b1 ended ${phase}:\n${await logs()}`);
  const pvbs = (await custom.listNamespacedCustomObject({ group: 'velero.io', version: 'v1', namespace: 'velero', plural: 'podvolumebackups' })) as { items: { spec: { node: string; volume: string }; status?: { phase?: string; progress?: { totalBytes?: number } } }[] };
  assert.equal(pvbs.items.length, 1);
  assert.equal(pvbs.items[0]!.spec.node, k8s.nodes[1]);
  assert.equal(pvbs.items[0]!.status?.phase, 'Completed');
  await m.unmount();

  const r = await velero.restore('r1', 'b1', 'shop', 'shop-restored', 'orders-0', 'data', dst, 300_000);
  try {
    assert.equal(r.phase, 'Completed', `restore r1 ended ${r.phase}:\n${await logs()}`);
    assert.ok(r.mount !== undefined, 'the restored pod was never bound to a node');
    // the node agent leaves its done marker (.velero/RESTORE_UID) for the restore-wait init container
    await fsp.rm(path.join(dst, '.velero'), { recursive: true, force: true });
    assert.deepEqual(await compareTrees(src, dst, { owner: true, mtime: true }), []);
  } finally {
    await r.mount?.unmount();
  }
});
