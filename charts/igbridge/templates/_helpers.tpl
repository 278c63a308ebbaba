{{- define "igbridge.name" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "igbridge.labels" -}}
app.kubernetes.io/name: igbridge-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- range $k, $v := .Values.commonLabels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{- define "igbridge.selector" -}}
app.kubernetes.io/name: igbridge-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "igbridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "igbridge.clusterWide" -}}
{{- if has "*" .Values.watchNamespaces }}true{{ end -}}
{{- end -}}

{{- /* The namespaces watched in namespaced mode (the release namespace by default). */ -}}
{{- define "igbridge.namespaces" -}}
{{- if .Values.watchNamespaces }}{{ join "," .Values.watchNamespaces }}{{ else }}{{ .Release.Namespace }}{{ end -}}
{{- end -}}

{{- /* What the operator does with channels and the objects it owns (no Secrets here). */ -}}
{{- define "igbridge.channelRules" -}}
- apiGroups: ["igbridge.dev"]
  resources: ["instagramchannels"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["igbridge.dev"]
  resources: ["instagramchannels/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["services", "serviceaccounts", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.channelIngress.enabled }}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end -}}

{{- define "igbridge.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- end -}}
