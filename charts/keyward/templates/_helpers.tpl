{{- define "keyward.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keyward.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "keyward.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "keyward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "keyward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keyward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "keyward.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "keyward.trustedKeysConfigMap" -}}
{{- default (printf "%s-trusted-keys" (include "keyward.fullname" .)) .Values.existingTrustedKeysConfigMap -}}
{{- end -}}

{{- define "keyward.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{/* Rules the operator needs on the Licenses it watches, wherever they are. */}}
{{- define "keyward.licenseRules" -}}
- apiGroups: [keyward.dev]
  resources: [licenses]
  verbs: [get, list, watch, patch]
- apiGroups: [keyward.dev]
  resources: [licenses/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* A duration like 14d, 12h, 30m or 90s, in seconds, for PromQL. */}}
{{- define "keyward.seconds" -}}
{{- $d := toString . -}}
{{- $n := int (trimSuffix "s" (trimSuffix "m" (trimSuffix "h" (trimSuffix "d" $d)))) -}}
{{- if hasSuffix "d" $d -}}{{ mul $n 86400 }}{{- else if hasSuffix "h" $d -}}{{ mul $n 3600 }}{{- else if hasSuffix "m" $d -}}{{ mul $n 60 }}{{- else -}}{{ $n }}{{- end -}}
{{- end -}}

{{/* Where the metrics and health servers listen; IPv6 addresses need brackets. */}}
{{- define "keyward.listenHost" -}}
{{- if contains ":" .Values.listenAddress -}}[{{ .Values.listenAddress }}]{{- else -}}{{ .Values.listenAddress }}{{- end -}}
{{- end }}

{{/* A probe reaches the Pod's IP unless told otherwise; a server bound to one address (say the
node's loopback under hostNetwork) must be probed there. */}}
{{- define "keyward.probeHost" -}}
{{- if not (has .Values.listenAddress (list "0.0.0.0" "::")) -}}
host: {{ .Values.listenAddress | quote }}
{{- end -}}
{{- end }}

{{/* A host-network Pod holds the node's ports: a surge Pod could never start beside it, so
the old Pod goes first. */}}
{{- define "keyward.strategy" -}}
{{- if .Values.updateStrategy -}}
{{- toYaml .Values.updateStrategy -}}
{{- else if .Values.hostNetwork -}}
type: RollingUpdate
rollingUpdate: {maxSurge: 0, maxUnavailable: 1}
{{- end -}}
{{- end }}
