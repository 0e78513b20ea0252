{{/* labels of every object: (dict "ctx" $ "component" "controller"); component may be "" */}}
{{- define "meshback.labels" -}}
app.kubernetes.io/name: meshback
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* the selector of a component's pods: (dict "ctx" $ "component" "agent") */}}
{{- define "meshback.selector" -}}
app.kubernetes.io/name: meshback
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "meshback.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
