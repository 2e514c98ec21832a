{{/* Name of discover's objects; sidecars reach discover through the Service of this name. */}}
{{- define "shoal.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-discover" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shoal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "shoal.selectorLabels" . }}
{{- end -}}

{{/* app.kubernetes.io/part-of=shoal keeps discover's own pods and Service out of the webhook. */}}
{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: shoal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: discover
app.kubernetes.io/part-of: shoal
{{- end -}}

{{- define "shoal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "shoal.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "shoal.fullname" .) -}}
{{- end -}}

{{/* The cluster DNS for the sidecars: the value, else kube-system/kube-dns looked up at install. */}}
{{- define "shoal.dnsUpstream" -}}
{{- if .Values.injector.dnsUpstream -}}
{{- .Values.injector.dnsUpstream -}}
{{- else -}}
{{- $kubeDns := lookup "v1" "Service" "kube-system" "kube-dns" -}}
{{- if and $kubeDns $kubeDns.spec $kubeDns.spec.clusterIP -}}
{{- $kubeDns.spec.clusterIP -}}
{{- else -}}
{{- fail "injector.dnsUpstream is empty and kube-system/kube-dns could not be looked up (helm template has no cluster): set injector.dnsUpstream to the cluster DNS address" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Native sidecars need Kubernetes 1.29 (SidecarContainers on by default). */}}
{{- define "shoal.legacySidecar" -}}
{{- if eq .Values.injector.sidecarMode "legacy" -}}true
{{- else if eq .Values.injector.sidecarMode "native" -}}false
{{- else -}}{{ semverCompare "<1.29-0" .Capabilities.KubeVersion.Version }}
{{- end -}}
{{- end -}}

{{/* EndpointSlices resolve named ports of native sidecars from Kubernetes 1.32. */}}
{{- define "shoal.portNamesOnApp" -}}
{{- if eq .Values.injector.portNamesOnApp "always" -}}true
{{- else if eq .Values.injector.portNamesOnApp "never" -}}false
{{- else -}}{{ semverCompare "<1.32-0" .Capabilities.KubeVersion.Version }}
{{- end -}}
{{- end -}}
