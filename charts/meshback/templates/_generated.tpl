{{- /* generated from src/k8s/api.ts and src/k8s/install.ts by 'npm run chart': do not edit */ -}}
{{- define "meshback.controllerRules" -}}
- apiGroups:
    - meshback.io
  resources:
    - backuppolicies
  verbs:
    - get
    - list
    - watch
- apiGroups:
    - meshback.io
  resources:
    - backuppolicies/status
  verbs:
    - get
    - patch
    - update
- apiGroups:
    - meshback.io
  resources:
    - volumebackups
  verbs:
    - get
    - list
    - watch
    - create
    - delete
    - patch
- apiGroups:
    - meshback.io
  resources:
    - volumebackups/status
  verbs:
    - get
    - patch
    - update
- apiGroups:
    - meshback.io
  resources:
    - volumerestores
  verbs:
    - get
    - list
    - watch
    - create
    - delete
    - patch
- apiGroups:
    - meshback.io
  resources:
    - volumerestores/status
  verbs:
    - get
    - patch
    - update
- apiGroups:
    - snapshot.storage.k8s.io
  resources:
    - volumesnapshots
  verbs:
    - get
    - list
    - watch
    - create
    - delete
- apiGroups:
    - snapshot.storage.k8s.io
  resources:
    - volumesnapshotclasses
  verbs:
    - get
    - list
- apiGroups:
    - ""
  resources:
    - persistentvolumeclaims
  verbs:
    - get
    - list
    - watch
    - create
    - delete
- apiGroups:
    - ""
  resources:
    - pods
  verbs:
    - get
    - list
    - watch
    - create
    - delete
- apiGroups:
    - storage.k8s.io
  resources:
    - storageclasses
  verbs:
    - get
    - list
- apiGroups:
    - ""
  resources:
    - pods/exec
  verbs:
    - get
    - create
- apiGroups:
    - apps
  resources:
    - deployments/scale
    - statefulsets/scale
  verbs:
    - get
    - patch
    - update
- apiGroups:
    - apps
  resources:
    - deployments
    - statefulsets
    - replicasets
  verbs:
    - get
    - list
{{- end -}}

{{- define "meshback.agentRules" -}}
- apiGroups:
    - meshback.io
  resources:
    - volumebackups
    - volumerestores
  verbs:
    - get
    - list
    - watch
- apiGroups:
    - meshback.io
  resources:
    - volumebackups/status
    - volumerestores/status
  verbs:
    - get
    - patch
    - update
- apiGroups:
    - meshback.io
  resources:
    - backuppolicies
  verbs:
    - get
- apiGroups:
    - ""
  resources:
    - secrets
  verbs:
    - get
- apiGroups:
    - ""
  resources:
    - pods
  verbs:
    - get
- apiGroups:
    - ""
  resources:
    - pods/exec
  verbs:
    - get
    - create
- apiGroups:
    - ""
  resources:
    - pods/portforward
  verbs:
    - get
    - create
- apiGroups:
    - apps
  resources:
    - deployments
    - statefulsets
    - daemonsets
    - replicasets
  verbs:
    - get
    - list
- apiGroups:
    - ""
  resources:
    - services
    - configmaps
  verbs:
    - get
    - list
- apiGroups:
    - networking.istio.io
    - security.istio.io
    - policy.linkerd.io
    - linkerd.io
    - consul.hashicorp.com
  resources:
    - "*"
  verbs:
    - get
    - list
- apiGroups:
    - apiextensions.k8s.io
  resources:
    - customresourcedefinitions
  verbs:
    - get
    - list
{{- end -}}

{{- define "meshback.controllerNamespaceRules" -}}
- apiGroups:
    - coordination.k8s.io
  resources:
    - leases
  verbs:
    - get
    - create
    - update
{{- end -}}

{{- define "meshback.noInjectionLabels" -}}
sidecar.istio.io/inject: "false"
{{- end -}}

{{- define "meshback.noInjectionAnnotations" -}}
sidecar.istio.io/inject: "false"
linkerd.io/inject: disabled
consul.hashicorp.com/connect-inject: "false"
{{- end -}}

{{- define "meshback.agentCapabilities" -}}
- CHOWN
- DAC_OVERRIDE
- DAC_READ_SEARCH
- FOWNER
- FSETID
- SETFCAP
{{- end -}}
