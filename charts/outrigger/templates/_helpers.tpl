{{/* The chart name, or nameOverride. */}}
{{- define "outrigger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, else the release name if it contains the chart name, else
<release>-<chart>. Kept to 45 characters so that "<fullname>-webhook-tls" and friends stay valid names. */}}
{{- define "outrigger.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The webhook's Deployment, Service and ServiceAccount. */}}
{{- define "outrigger.webhookName" -}}
{{- include "outrigger.fullname" . }}-webhook
{{- end }}

{{/* The Secret holding the serving certificate (and, self-managed, the CA). */}}
{{- define "outrigger.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "provided" }}
{{- .Values.certificates.provided.secretName }}
{{- else }}
{{- include "outrigger.fullname" . }}-webhook-tls
{{- end }}
{{- end }}

{{- define "outrigger.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "outrigger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: outrigger
{{- end }}

{{- define "outrigger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outrigger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "outrigger.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The hardened security contexts of every pod and container the chart runs. */}}
{{- define "outrigger.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "outrigger.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* Refuses values that the schema cannot express, each with what to set. */}}
{{- define "outrigger.validate" -}}
{{- $sidecars := list "config-sync" "git-sync" "https-proxy" "shard-ambassador" "topz" }}
{{- range .Values.config.sidecars }}
{{- $sidecars = append $sidecars .name }}
{{- end }}
{{- range $i, $name := .Values.config.defaults }}
{{- if not (has $name $sidecars) }}
{{- fail (printf "config.defaults[%d]=%q: not a sidecar; accepted: %s" $i $name (join ", " ($sidecars | uniq | sortAlpha))) }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.config.images.overrides }}
{{- if not (has $name $sidecars) }}
{{- fail (printf "config.images.overrides: %q is not a sidecar; accepted: %s" $name (join ", " ($sidecars | uniq | sortAlpha))) }}
{{- end }}
{{- end }}
{{- if eq .Values.certificates.mode "provided" }}
{{- if not .Values.certificates.provided.secretName }}
{{- fail (printf "certificates.mode=provided needs certificates.provided.secretName: the name of a Secret in namespace %s holding tls.crt and tls.key, valid for %s.%s.svc" .Release.Namespace (include "outrigger.webhookName" .) .Release.Namespace) }}
{{- end }}
{{- if not (contains "BEGIN CERTIFICATE" (b64dec .Values.certificates.provided.caBundle)) }}
{{- fail (printf "certificates.provided.caBundle=%q: want the base64 of the PEM CA certificate that signed the Secret's tls.crt (e.g. base64 -w0 ca.crt)" (.Values.certificates.provided.caBundle | trunc 40)) }}
{{- end }}
{{- end }}
{{- end }}
