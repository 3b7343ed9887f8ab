{{/*
Names and metadata as operations/deployment-charts' modules/base
(name, meta_2.0.1, helper_1.1.3) define them, so the chart reads like the
scaffold's and could use the vendored modules instead.
*/}}
{{- define "base.name.chart" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "base.name.release" -}}
{{- printf "%s-%s" (include "base.name.chart" .) .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "base.name.chartid" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" -}}
{{- end -}}

{{- define "base.meta.name" -}}
{{ template "base.name.release" .Root }}{{- if .Name }}-{{ .Name }}{{ end }}
{{- end -}}

{{- define "base.meta.metadata" }}
name: {{ template "base.meta.name" . }}
{{- include "base.meta.labels" .Root }}
{{- end -}}

{{- define "base.meta.labels" }}
labels:
  app: {{ template "base.name.chart" . }}
  chart: {{ template "base.name.chartid" . }}
  release: {{ .Release.Name }}
  heritage: {{ .Release.Service }}
{{- end }}

{{- define "base.meta.pod_labels" }}
app: {{ template "base.name.chart" . }}
release: {{ .Release.Name }}
routed_via: {{ .Values.routed_via | default .Release.Name }}
{{- end }}

{{- define "base.meta.selector" }}
matchLabels:
  app: {{ template "base.name.chart" . }}
  release: {{ .Release.Name }}
{{- end }}

{{/*
The sha256 of the data of the ConfigMap or Secret a template renders: it
changes with their content, not with their metadata, so a pod template
annotation carrying it restarts the pods exactly when the files change.
*/}}
{{- define "base.helper.resourcesDataChecksum" -}}
{{- $rendered := include (print .Root.Template.BasePath .resourceFilePath) .Root -}}
{{- $data := list -}}
{{- range $doc := splitList "---\n" $rendered -}}
{{- $r := fromYaml $doc -}}
{{- with $r.data }}{{ $data = append $data . }}{{ end -}}
{{- with $r.stringData }}{{ $data = append $data . }}{{ end -}}
{{- end -}}
{{- toJson $data | sha256sum -}}
{{- end -}}

{{- define "base.helper.restrictedSecurityContext" }}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop:
      - ALL
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The detector's config file, as the ConfigMap holds it. */}}
{{- define "detector.config" -}}
{{- if .Values.detector.config -}}
{{ toYaml .Values.detector.config }}
{{- else -}}
# Every key at its default: the detector describes Wikimedia production.
{}
{{- end -}}
{{- end -}}
