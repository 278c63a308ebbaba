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

{{- /* imagePullSecrets as a JSON list of names: both [{name: x}] and [x] are accepted. */ -}}
{{- define "igbridge.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- if kindIs "string" . }}{{ $names = append $names . }}{{ else }}{{ $names = append $names .name }}{{ end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{- /* IGBRIDGE_RELAY_POD: what the operator puts on every relay pod. */ -}}
{{- define "igbridge.relayPod" -}}
{{- $pod := deepCopy .Values.relayPods -}}
{{- $_ := set $pod "imagePullSecrets" (include "igbridge.pullSecretNames" . | fromJsonArray) -}}
{{- $_ = set $pod "imagePullPolicy" .Values.image.pullPolicy -}}
{{- toJson $pod -}}
{{- end -}}

{{- /* What the operator does with channels and the objects it owns (no Secrets here):
only the verbs its code uses (tests/test_operator_rbac.py compares them). */ -}}
{{- define "igbridge.channelRules" -}}
# kopf watches channels and patches its finalizer and progress annotations onto them;
# "get" because the relay's Role the operator creates grants it (no escalation).
- apiGroups: ["igbridge.dev"]
  resources: ["instagramchannels"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["igbridge.dev"]
  resources: ["instagramchannels/status"]
  verbs: ["get", "patch"]
# Owned objects carry blockOwnerDeletion: where the OwnerReferencesPermissionEnforcement
# admission plugin runs (OpenShift), setting it needs update on the owner's finalizers.
- apiGroups: ["igbridge.dev"]
  resources: ["instagramchannels/finalizers"]
  verbs: ["update"]
# Server-side apply: read to compare, patch to apply, create when the apply creates.
- apiGroups: [""]
  resources: ["services", "serviceaccounts", "persistentvolumeclaims"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
# Deleted again when a relay goes down to one replica.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.channelIngress.enabled }}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch"]
{{- end }}
{{- end -}}

{{- /* The channels' Secrets, read by name (never listed or watched); the generated one
applied, a refreshed Instagram token patched in. */ -}}
{{- define "igbridge.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
{{- end -}}
