/**
 * k8s/pods: the helper pod meshback creates to hold a PVC mounted on a node (a PVC made from a
 * VolumeSnapshot, or a restore target). It does nothing itself: the kubelet mounts the volume for
 * it under /var/lib/kubelet/pods/UID/volumes/..., and the agent on that node reads or writes the
 * volume there. Its container runs `meshback k8s hold` (src/cli/commands/k8s-hold.ts), which sleeps
 * until SIGTERM and then exits 0.
 *
 * Mesh awareness: the pod carries the NO_INJECTION labels and annotations of api.ts, so no mesh
 * webhook adds a sidecar to it (a sidecar would keep it from ever completing: istio#11045,
 * linkerd/linkerd2#2833). It has an ownerReference to the VolumeBackup or VolumeRestore it serves
 * (the garbage collector removes it with its owner), the label MANAGED_BY, OWNER_LABEL, and an
 * activeDeadlineSeconds so a helper forgotten by a crashed controller ends by itself.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { MANAGED_BY, NO_INJECTION, OWNER_LABEL } from './api.ts';

/** where the held volume is mounted in the helper pod */
export const HELPER_MOUNT = '/volume';
/** the helper pod's only container */
export const HELPER_CONTAINER = 'holder';
/** a helper pod ends by itself after this long (6 h) unless told otherwise */
export const HELPER_DEADLINE_SECONDS = 6 * 3600;

export interface HelperPodOptions {
  name: string;
  namespace: string;
  /** the node to run on (nodeName: no scheduling); absent: the scheduler places it (where the PVC's topology allows) */
  node?: string;
  pvc: string;
  readOnly: boolean;
  /** the meshback image */
  image: string;
  /** the VolumeBackup or VolumeRestore the pod serves */
  owner: { apiVersion: string; kind: string; name: string; uid: string };
  /** more labels (MANAGED_BY, OWNER_LABEL and the no-injection label win over these) */
  labels?: Record<string, string>;
  /** activeDeadlineSeconds (default HELPER_DEADLINE_SECONDS) */
  deadlineSeconds?: number;
}

/** The pod that holds `o.pvc` mounted at /volume on a node; see the file comment. */
export function helperPod(o: HelperPodOptions): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: o.name,
      namespace: o.namespace,
      labels: { ...o.labels, [MANAGED_BY.key]: MANAGED_BY.value, [OWNER_LABEL]: o.owner.name, ...NO_INJECTION.labels },
      annotations: { ...NO_INJECTION.annotations },
      ownerReferences: [{ apiVersion: o.owner.apiVersion, kind: o.owner.kind, name: o.owner.name, uid: o.owner.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      restartPolicy: 'Never',
      ...(o.node !== undefined ? { nodeName: o.node } : {}),
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 5,
      activeDeadlineSeconds: o.deadlineSeconds ?? HELPER_DEADLINE_SECONDS,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: HELPER_CONTAINER,
          image: o.image,
          args: ['k8s', 'hold'],
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } },
          resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } },
          volumeMounts: [{ name: 'volume', mountPath: HELPER_MOUNT, readOnly: o.readOnly }],
        },
      ],
      volumes: [{ name: 'volume', persistentVolumeClaim: { claimName: o.pvc, readOnly: o.readOnly } }],
    },
  };
}
