/**
 * k8s/pods: the helper pod meshback creates to hold a PVC mounted on a node (interim; replaced by the mesh-aware builder).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { MANAGED_BY, NO_INJECTION, OWNER_LABEL } from './api.ts';

export function helperPod(o: { name: string; namespace: string; node?: string; pvc: string; readOnly: boolean; image: string; owner: { apiVersion: string; kind: string; name: string; uid: string }; labels?: Record<string, string>; deadlineSeconds?: number }): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: o.name, namespace: o.namespace, labels: { ...o.labels, ...NO_INJECTION.labels, [MANAGED_BY.key]: MANAGED_BY.value, [OWNER_LABEL]: o.owner.name }, annotations: { ...NO_INJECTION.annotations }, ownerReferences: [{ ...o.owner, controller: true, blockOwnerDeletion: true }] },
    spec: {
      restartPolicy: 'Never',
      ...(o.node !== undefined ? { nodeName: o.node } : {}),
      activeDeadlineSeconds: o.deadlineSeconds ?? 6 * 3600,
      automountServiceAccountToken: false,
      containers: [{ name: 'holder', image: o.image, args: ['k8s', 'hold'], volumeMounts: [{ name: 'volume', mountPath: '/volume', readOnly: o.readOnly }] }],
      volumes: [{ name: 'volume', persistentVolumeClaim: { claimName: o.pvc, readOnly: o.readOnly } }],
    },
  };
}
