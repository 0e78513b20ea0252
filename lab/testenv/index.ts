/**
 * The test environment as a library, for tests: start once per test file, stop in after().
 *
 *   const s3 = await startS3();          // MinIO on 127.0.0.1, buckets s3.bucket and s3.lockedBucket
 *   const k8s = await startK8s();        // etcd + kube-apiserver + controller manager + scheduler + kwok
 *   const si = await startStandin({ kc: k8s.kubeConfig(), root, nodes: k8s.nodes }); // kubelet + CSI driver stand-in (root, btrfs)
 *   const tp = await startToxiproxy();
 *   const restic = await binary('restic');
 *   after(() => Promise.all([s3.stop(), k8s.stop(), tp.stop()]));
 *
 * Components are built on first use (cached in ~/.cache/meshback-testenv); servers listen on
 * 127.0.0.1 on free ports, keep their data in a temporary directory, and stop (and remove it)
 * when the test process dies, whichever way.
 */
export { binary, build, cacheRoot, componentDir, filesOf, isBuilt } from './build.ts';
export { TestenvError } from './errors.ts';
export { startK8s, KWOK_NODES, type K8sEnv } from './k8s.ts';
export { startStandin, STANDIN_CLASS, STANDIN_DRIVER, STANDIN_STUCK_CLASS, type Standin, type StandinOptions } from './k8s-standin.ts';
export { freePort } from './proc.ts';
export { startS3, s3Client, type S3Env, type StartOpts } from './s3.ts';
export { startToxiproxy, type Toxic, type ToxiproxyEnv } from './toxiproxy.ts';
export { COMPONENTS, COMPONENT_NAMES, type ComponentName } from './versions.ts';
