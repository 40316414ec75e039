{{- define "ferry.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ferry.labels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ferry.selector" -}}
app.kubernetes.io/name: {{ include "ferry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferry.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* A TOML array of strings. */}}
{{- define "ferry.tomlList" -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ $v | toString | quote }}{{ end }}]
{{- end -}}

{{/* [tls], [limits] and [log]: the same for nodes and redirector. */}}
{{- define "ferry.serverToml" -}}
{{- if .Values.tls.enabled }}
[tls]
cert = "/etc/ferry/tls/tls.crt"
key = "/etc/ferry/tls/tls.key"
{{- if .Values.tls.clientCA }}
client_ca = "/etc/ferry/tls/ca.crt"
{{- end }}
{{- end }}

[limits]
{{- with .Values.limits }}
{{- if gt (int .requestsPerSecond) 0 }}
requests_per_second = {{ int .requestsPerSecond }}
{{- if gt (int .burst) 0 }}
burst = {{ int .burst }}
{{- end }}
{{- end }}
{{- if gt (int .connectionsPerClient) 0 }}
connections_per_client = {{ int .connectionsPerClient }}
{{- end }}
request_timeout = {{ .requestTimeout | quote }}
shutdown_grace = {{ .shutdownGrace | quote }}
{{- end }}

[log]
format = {{ .Values.log.format | quote }}
level = {{ .Values.log.level | quote }}
access_log = {{ .Values.log.accessLog }}
{{- end -}}

{{/* Seconds in a duration like "30s" or "2m", for terminationGracePeriodSeconds. */}}
{{- define "ferry.graceSeconds" -}}
{{- $d := .Values.limits.shutdownGrace | toString -}}
{{- if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60 | add 5 }}{{- else -}}{{ trimSuffix "s" $d | int | add 5 }}{{- end -}}
{{- end -}}

{{- define "ferry.secretName" -}}
{{ include "ferry.fullname" . }}-secrets
{{- end -}}

{{/* Whether the chart's Secret has anything in it. */}}
{{- define "ferry.needsSecret" -}}
{{- $n := 0 -}}
{{- range .Values.node.upstreams }}{{ if .password }}{{ $n = add1 $n }}{{ end }}{{ end -}}
{{- if .Values.node.auth.enabled }}{{ $n = add1 $n }}{{ end -}}
{{- if .Values.node.storage.s3.secretAccessKey }}{{ $n = add1 $n }}{{ end -}}
{{- if gt $n 0 }}true{{ end -}}
{{- end -}}
