/**
 * The one list of pinned versions of every part of the test environment. Each component is
 * built from its published Go module with the machine's Go (1.26) into
 * ~/.cache/meshback-testenv/NAME-VERSION/ and reused while that directory's stamp names the
 * same version. To move a component to a newer release, change its line here: the next
 * `npm run testenv -- build` builds it anew (the old directory can be deleted by hand).
 */

export interface GoComponent {
  kind: 'go';
  /** the module that is built */
  module: string;
  version: string;
  /** binary name -> package path (a main package of the module) */
  binaries: Record<string, string>;
  /** -X flags for the version variables that a release build sets (name=value) */
  xflags?: Record<string, string>;
  /**
   * The module's own replace directives point at its sibling directories (./staging/...,
   * ../api), which a plain `go install MODULE@VERSION` refuses: these replace each sibling
   * module with its published version instead, in a go.mod of our own.
   */
  replaceStaging?: { prefix: string; version: string };
  /**
   * The module's own replace directives that point at other published modules (Velero builds
   * kopia from its fork): Go ignores a dependency's replaces, so these are copied into our go.mod.
   */
  keepReplaces?: boolean;
  /** the version the binary reports, as a substring of its `version` output */
  reports: string;
  versionArgs: string[];
  /** per binary, where one answers other arguments */
  versionArgsOf?: Record<string, string[]>;
  /** binaries that report no version (a plugin binary that only speaks its plugin protocol) */
  unversioned?: string[];
  /** files of the module kept beside the binaries (in files/, by base name) */
  files?: string[];
}

export interface FilesComponent {
  kind: 'files';
  /** the module whose files are copied (fetched with `go mod download`) */
  module: string;
  version: string;
  /** directory inside the module -> files taken from it */
  from: string;
  files: string[];
}

export type Component = GoComponent | FilesComponent;

const K8S = 'v1.36.3';
const K8S_STAGING = 'v0.36.3';
const MINIO = 'v0.0.0-20260212201848-7aac2a2c5b7c';

export const COMPONENTS = {
  minio: {
    kind: 'go',
    module: 'github.com/minio/minio',
    // MinIO publishes no semantic version tags to the module proxy: this is the newest commit it serves
    version: MINIO,
    binaries: { minio: 'github.com/minio/minio' },
    xflags: {
      'github.com/minio/minio/cmd.Version': '2026-02-12T20:18:48Z',
      'github.com/minio/minio/cmd.ReleaseTag': 'DEVELOPMENT.2026-02-12T20-18-48Z',
      'github.com/minio/minio/cmd.CommitID': '7aac2a2c5b7c',
      'github.com/minio/minio/cmd.ShortCommitID': '7aac2a2c5b7c',
    },
    reports: '2026-02-12T20',
    versionArgs: ['--version'],
  },
  etcd: {
    kind: 'go',
    module: 'go.etcd.io/etcd/server/v3',
    version: 'v3.6.17',
    binaries: { etcd: 'go.etcd.io/etcd/server/v3' },
    reports: '3.6.17',
    versionArgs: ['--version'],
  },
  kubernetes: {
    kind: 'go',
    module: 'k8s.io/kubernetes',
    version: K8S,
    binaries: {
      'kube-apiserver': 'k8s.io/kubernetes/cmd/kube-apiserver',
      'kube-controller-manager': 'k8s.io/kubernetes/cmd/kube-controller-manager',
      'kube-scheduler': 'k8s.io/kubernetes/cmd/kube-scheduler',
      kubectl: 'k8s.io/kubernetes/cmd/kubectl',
    },
    replaceStaging: { prefix: 'k8s.io/', version: K8S_STAGING },
    xflags: {
      'k8s.io/component-base/version.gitVersion': K8S,
      'k8s.io/component-base/version.gitMajor': K8S.split('.')[0]!.slice(1),
      'k8s.io/component-base/version.gitMinor': K8S.split('.')[1]!,
      'k8s.io/component-base/version.gitTreeState': 'clean',
      'k8s.io/client-go/pkg/version.gitVersion': K8S,
      'k8s.io/client-go/pkg/version.gitMajor': K8S.split('.')[0]!.slice(1),
      'k8s.io/client-go/pkg/version.gitMinor': K8S.split('.')[1]!,
    },
    reports: K8S,
    versionArgs: ['--version'],
    versionArgsOf: { kubectl: ['version', '--client'] },
  },
  kwok: {
    kind: 'go',
    module: 'sigs.k8s.io/kwok',
    version: 'v0.8.0',
    binaries: { kwok: 'sigs.k8s.io/kwok/cmd/kwok' },
    xflags: { 'sigs.k8s.io/kwok/pkg/consts.Version': 'v0.8.0' },
    // the stages kwokctl gives its nodes and pods by default: nodes become Ready and renew their
    // Lease, pods bound to them run, pods of Jobs complete, deleted pods go
    files: [
      'kustomize/stage/node/fast/node-initialize.yaml',
      'kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml',
      'kustomize/stage/pod/fast/pod-ready.yaml',
      'kustomize/stage/pod/fast/pod-complete.yaml',
      'kustomize/stage/pod/fast/pod-delete.yaml',
    ],
    reports: 'v0.8.0',
    versionArgs: ['--version'],
  },
  'snapshot-crds': {
    kind: 'files',
    module: 'github.com/kubernetes-csi/external-snapshotter/client/v8',
    version: 'v8.7.0',
    from: 'config/crd',
    files: [
      'snapshot.storage.k8s.io_volumesnapshotclasses.yaml',
      'snapshot.storage.k8s.io_volumesnapshotcontents.yaml',
      'snapshot.storage.k8s.io_volumesnapshots.yaml',
    ],
  },
  helm: {
    kind: 'go',
    module: 'helm.sh/helm/v4',
    version: 'v4.3.2',
    binaries: { helm: 'helm.sh/helm/v4/cmd/helm' },
    xflags: { 'helm.sh/helm/v4/internal/version.version': 'v4.3.2' },
    reports: 'v4.3.2',
    versionArgs: ['version', '--short'],
  },
  restic: {
    kind: 'go',
    module: 'github.com/restic/restic',
    version: 'v0.18.1',
    binaries: { restic: 'github.com/restic/restic/cmd/restic' },
    reports: '0.18.1',
    versionArgs: ['version'],
  },
  kopia: {
    kind: 'go',
    module: 'github.com/kopia/kopia',
    version: 'v0.22.3',
    binaries: { kopia: 'github.com/kopia/kopia' },
    xflags: { 'github.com/kopia/kopia/repo.BuildVersion': '0.22.3', 'github.com/kopia/kopia/repo.BuildInfo': 'v0.22.3' },
    reports: '0.22.3',
    versionArgs: ['--version'],
  },
  toxiproxy: {
    kind: 'go',
    module: 'github.com/Shopify/toxiproxy/v2',
    version: 'v2.12.0',
    binaries: { 'toxiproxy-server': 'github.com/Shopify/toxiproxy/v2/cmd/server', 'toxiproxy-cli': 'github.com/Shopify/toxiproxy/v2/cmd/cli' },
    xflags: { 'github.com/Shopify/toxiproxy/v2.Version': '2.12.0' },
    reports: '2.12.0',
    versionArgs: ['--version'],
    unversioned: ['toxiproxy-cli'],
  },
  // Velero 1.16 is the last release whose node agent runs a PodVolumeBackup's data path (the kopia
  // uploader) in its own process (pkg/controller/pod_volume_backup_controller.go calls
  // dataPathMgr.CreateFileSystemBR); from 1.17 on it exposes each one in a pod of its own
  // (exposer.NewPodVolumeExposer + CreateMicroServiceBRWatcher), which a kwok node never runs.
  // v1.16.2 is the newest 1.16 patch the module proxy serves.
  velero: {
    kind: 'go',
    module: 'github.com/vmware-tanzu/velero',
    version: 'v1.16.2',
    binaries: { velero: 'github.com/vmware-tanzu/velero/cmd/velero' },
    keepReplaces: true,
    xflags: {
      'github.com/vmware-tanzu/velero/pkg/buildinfo.Version': 'v1.16.2',
      'github.com/vmware-tanzu/velero/pkg/buildinfo.GitTreeState': 'clean',
      // the server and the node agent start controller-runtime managers without metrics options,
      // whose metrics server would listen on :8080 on every interface (and a second process
      // fails, address in use): off; Velero's own metrics listen on --metrics-address
      'sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress': '0',
    },
    reports: 'v1.16.2',
    versionArgs: ['version', '--client-only'],
  },
  // The object-store plugin for the BackupStorageLocation on MinIO. The release paired with Velero
  // 1.16 (v1.12.x) is not served by the module proxy; v1.14.3 is, and speaks the same ObjectStore
  // v1 plugin protocol (the e2e test in test/e2e/velero.test.ts runs it against the 1.16.2 server).
  'velero-plugin-for-aws': {
    kind: 'go',
    module: 'github.com/vmware-tanzu/velero-plugin-for-aws',
    version: 'v1.14.3',
    binaries: { 'velero-plugin-for-aws': 'github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws' },
    reports: '',
    versionArgs: [],
    unversioned: ['velero-plugin-for-aws'],
  },
} satisfies Record<string, Component>;

export type ComponentName = keyof typeof COMPONENTS;
export const COMPONENT_NAMES = Object.keys(COMPONENTS) as ComponentName[];
