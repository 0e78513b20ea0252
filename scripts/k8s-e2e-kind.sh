#!/usr/bin/env bash
# End to end on a real cluster (NOT run by CI here: it needs a container runtime, kind and network
# access to images). What the suite proves against a real API server with a stand-in kubelet and CSI
# driver, this proves with real ones: kind, the CSI hostpath driver with its snapshotter, and a mesh.
#
#   scripts/k8s-e2e-kind.sh [istio|linkerd|none]      (default istio)
#
# Needs: docker (or podman as docker), kind, kubectl, helm, git; istioctl for istio, linkerd for linkerd.
# Steps: a kind cluster -> the snapshot CRDs, snapshot controller and CSI hostpath driver (with its
# VolumeSnapshotClass) -> the mesh, injection on for namespace shop -> the meshback image loaded into
# kind -> the chart -> a StatefulSet with data on a PVC -> a BackupPolicy (every 2m, snapshot) ->
# waits for a Completed, verified VolumeBackup -> `meshback k8s restore` into a new PVC -> compares
# checksums read through a pod -> checks no VolumeSnapshot, helper pod or snapshot PVC is left and
# that meshback's pods carry no sidecar. Exits non-zero at the first failed check.
set -euo pipefail
mesh=${1:-istio}
cluster=meshback-e2e
here=$(cd "$(dirname "$0")/.." && pwd)
image=meshback:e2e
ns=shop
fail() { echo "k8s-e2e: $*" >&2; exit 1; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq "$t"); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 1; done
  fail "timed out after ${t}s waiting for $what"
}

for c in docker kind kubectl helm git; do command -v $c >/dev/null || fail "$c is not installed"; done
kind get clusters | grep -qx $cluster || kind create cluster --name $cluster --wait 120s
kubectl config use-context kind-$cluster

# CSI: snapshot CRDs and controller, then the hostpath driver (its deploy script installs the VolumeSnapshotClass too)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --depth 1 -b v8.2.0 https://github.com/kubernetes-csi/external-snapshotter "$work/snapshotter"
kubectl kustomize "$work/snapshotter/client/config/crd" | kubectl apply -f -
kubectl -n kube-system kustomize "$work/snapshotter/deploy/kubernetes/snapshot-controller" | kubectl apply -f -
git clone -q --depth 1 https://github.com/kubernetes-csi/csi-driver-host-path "$work/hostpath"
"$work/hostpath/deploy/kubernetes-latest/deploy.sh"
kubectl apply -f "$work/hostpath/examples/csi-storageclass.yaml"
kubectl apply -f "$work/hostpath/examples/csi-volumesnapshotclass.yaml"
kubectl annotate volumesnapshotclass csi-hostpath-snapclass snapshot.storage.kubernetes.io/is-default-class=true --overwrite

kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f -
case $mesh in
  istio) command -v istioctl >/dev/null || fail "istioctl is not installed"
         istioctl install -y --set profile=minimal
         kubectl label namespace $ns istio-injection=enabled --overwrite ;;
  linkerd) command -v linkerd >/dev/null || fail "linkerd is not installed"
         linkerd install --crds | kubectl apply -f - && linkerd install | kubectl apply -f - && linkerd check
         kubectl annotate namespace $ns linkerd.io/inject=enabled --overwrite ;;
  none) ;;
  *) fail "unknown mesh $mesh: istio, linkerd or none" ;;
esac

docker build -t $image "$here"
kind load docker-image $image --name $cluster
helm upgrade --install meshback "$here/charts/meshback" -n meshback --create-namespace --set image.repository=meshback --set image.tag=e2e --set image.pullPolicy=Never --wait

# the application: a StatefulSet writing data onto its PVC
kubectl -n $ns apply -f - <<YAML
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: orders}
spec:
  serviceName: orders
  replicas: 1
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders, backup: "yes"}}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        command: ["sh", "-c", "for i in \$(seq 200); do head -c 100000 /dev/urandom > /data/f\$i; done; sync; sleep 1000000"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: csi-hostpath-sc, resources: {requests: {storage: 1Gi}}}
YAML
kubectl -n $ns rollout status statefulset/orders --timeout 180s
sleep 10
# the repository: S3 on an in-cluster MinIO, its credentials in the policy's Secret
kubectl create namespace s3 --dry-run=client -o yaml | kubectl apply -f -
kubectl -n s3 apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio}
spec:
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}, annotations: {sidecar.istio.io/inject: "false", linkerd.io/inject: disabled}}
    spec:
      containers:
      - {name: minio, image: quay.io/minio/minio, args: [server, /data], env: [{name: MINIO_ROOT_USER, value: e2e-access}, {name: MINIO_ROOT_PASSWORD, value: e2e-secret-key}], ports: [{containerPort: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: minio}
spec: {selector: {app: minio}, ports: [{port: 9000}]}
YAML
kubectl -n s3 rollout status deployment/minio --timeout 180s
kubectl -n s3 run mkbucket --rm -i --restart=Never --image=quay.io/minio/mc --env MC_HOST_m=http://e2e-access:e2e-secret-key@minio.s3.svc:9000 -- mb -p m/backups
repo=s3:http://minio.s3.svc:9000/backups/shop
kubectl -n $ns create secret generic backup-repo --from-literal=repository=$repo --from-literal=password=e2e-password \
  --from-literal=AWS_ACCESS_KEY_ID=e2e-access --from-literal=AWS_SECRET_ACCESS_KEY=e2e-secret-key --dry-run=client -o yaml | kubectl apply -f -
kubectl -n s3 run init-repo --rm -i --restart=Never --image=$image --image-pull-policy=Never \
  --env MESHBACK_PASSWORD=e2e-password --env AWS_ACCESS_KEY_ID=e2e-access --env AWS_SECRET_ACCESS_KEY=e2e-secret-key -- init --repo $repo
kubectl -n $ns apply -f - <<YAML
apiVersion: meshback.io/v1alpha1
kind: BackupPolicy
metadata: {name: nightly}
spec:
  selector: {matchLabels: {backup: "yes"}}
  schedule: every 2m
  strategy: snapshot
  rpo: 1h
  repository: {secretRef: {name: backup-repo}}
YAML
wait_for 300 "a Completed VolumeBackup" sh -c "kubectl -n $ns get volumebackups -o jsonpath='{.items[*].status.phase}' | grep -q Completed"
kubectl -n $ns get volumebackups -o wide
snap=$(kubectl -n $ns get volumebackups -o jsonpath='{.items[?(@.status.phase=="Completed")].status.snapshotId}' | awk '{print $1}')
[ "$(kubectl -n $ns get volumebackups -o jsonpath='{.items[?(@.status.phase=="Completed")].status.verification.verified}' | awk '{print $1}')" = true ] || fail "the backup is not verified"
"$here/bin/meshback" k8s restore "$snap" --to-pvc orders-restored --create --size 1Gi --storage-class csi-hostpath-sc --policy nightly -n $ns --timeout 10m
sum() { kubectl -n $ns run "sum-$1" --rm -i --restart=Never --image=busybox:1.36 --overrides='{"metadata":{"annotations":{"sidecar.istio.io/inject":"false","linkerd.io/inject":"disabled"}},"spec":{"containers":[{"name":"s","image":"busybox:1.36","command":["sh","-c","cd /d && find . -type f | sort | xargs md5sum"],"volumeMounts":[{"name":"d","mountPath":"/d"}]}],"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"'$2'"}}]}}' 2>/dev/null | grep -v "pod .* deleted"; }
[ "$(sum a data-orders-0)" = "$(sum b orders-restored)" ] || fail "the restored PVC differs from the original"
[ -z "$(kubectl -n $ns get volumesnapshots,pods,pvc -l app.kubernetes.io/managed-by=meshback -o name)" ] || fail "meshback left objects behind"
for p in $(kubectl -n meshback get pods -o name); do
  kubectl -n meshback get "$p" -o jsonpath='{.spec.containers[*].name} {.spec.initContainers[*].name}' | grep -Eq 'istio-proxy|linkerd-proxy' && fail "$p has a mesh sidecar"
done
echo "k8s-e2e ($mesh): backup verified, restore identical, nothing left behind, no sidecar in meshback's pods"
