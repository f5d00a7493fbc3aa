{{/*
Shared names and labels. Names are cut at 63 characters: Kubernetes refuses longer label
values, and some names become labels.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "nanovisor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every namespaced resource: fullnameOverride, else RELEASE-CHART, else RELEASE
when the release name already contains the chart name.
*/}}
{{- define "nanovisor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* CHART-VERSION, for the helm.sh/chart label. */}}
{{- define "nanovisor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "nanovisor.labels" -}}
helm.sh/chart: {{ include "nanovisor.chart" . }}
{{ include "nanovisor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the installer's pods (immutable in a DaemonSet: keep them few). */}}
{{- define "nanovisor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nanovisor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The installer's service account. */}}
{{- define "nanovisor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nanovisor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The installer image, tag defaulting to the chart's appVersion. */}}
{{- define "nanovisor.installerImage" -}}
{{- printf "%s:%s" .Values.installer.image.repository (default .Chart.AppVersion .Values.installer.image.tag) }}
{{- end }}

{{/* The shim's config file on the node (containerd passes it as options.ConfigPath). */}}
{{- define "nanovisor.shimConfigPath" -}}
{{- printf "%s/shim.toml" .Values.node.configDir }}
{{- end }}

{{/* The default ACL policy file on the node, when there is a default policy. */}}
{{- define "nanovisor.aclPath" -}}
{{- printf "%s/acl.yaml" .Values.node.configDir }}
{{- end }}

{{/* Where a host path is mounted in the installer container. */}}
{{- define "nanovisor.hostMount" -}}
{{- printf "/host%s" . }}
{{- end }}
