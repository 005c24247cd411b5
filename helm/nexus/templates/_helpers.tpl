{{/* Names and labels */}}
{{- define "nexus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nexus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "nexus.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "nexus.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nexus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nexus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nexus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "nexus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "nexus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nexus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nexus.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Fixed paths inside the container (the image's VOLUME is the data path). */}}
{{- define "nexus.dataPath" -}}/var/lib/nexus{{- end -}}
{{- define "nexus.configPath" -}}/etc/nexus/config{{- end -}}
{{- define "nexus.secretsPath" -}}/etc/nexus/secrets{{- end -}}

{{/* The Secret the chart creates (auth key unless existing, metrics token, provider keys). */}}
{{- define "nexus.secretName" -}}{{ include "nexus.fullname" . }}{{- end -}}

{{- define "nexus.authSecretName" -}}
{{- default (include "nexus.secretName" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "nexus.authKey" -}}
{{- get (dict "hmac" .Values.auth.hmacSecretKey "publicKey" .Values.auth.publicKeyKey "jwks" .Values.auth.jwksKey) .Values.auth.type -}}
{{- end -}}

{{/* The setting that names the auth key file, by auth.type. */}}
{{- define "nexus.authFileEnv" -}}
{{- get (dict "hmac" "NEXUS_AUTH_SECRET_FILE" "publicKey" "NEXUS_AUTH_PUBLIC_KEY_FILE" "jwks" "NEXUS_AUTH_JWKS_FILE") .Values.auth.type -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: given (checked) or the most the server's stop can take. */}}
{{- define "nexus.gracePeriod" -}}
{{- $floor := addf .Values.server.drainDelay .Values.server.shutdownTimeout -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- ceil (addf .Values.server.drainDelay (mulf 2 .Values.server.shutdownTimeout) 10) | int -}}
{{- else if lt (float64 .Values.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least server.drainDelay + server.shutdownTimeout (%v): the pod would be killed mid-drain" .Values.terminationGracePeriodSeconds $floor) -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{/* A number as TOML/env text: YAML values arrive as float64, and whole ones must read back
as integers (Nexus refuses 8765.0 for an integer setting). */}}
{{- define "nexus.number" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* One TOML value: booleans, numbers, strings, arrays, inline tables. */}}
{{- define "nexus.tomlValue" -}}
{{- if kindIs "bool" . -}}{{ . }}
{{- else if kindIs "float64" . -}}{{ include "nexus.number" . }}
{{- else if or (kindIs "int64" .) (kindIs "int" .) -}}{{ . }}
{{- else if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "slice" . -}}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "nexus.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" . -}}
{{- $m := . -}}
{ {{- range $i, $k := keys $m | sortAlpha }}{{ if $i }},{{ end }} {{ toJson $k }} = {{ include "nexus.tomlValue" (get $m $k) }}{{ end }} }
{{- else -}}{{ fail (printf "cannot render %v as a TOML value" .) }}
{{- end -}}
{{- end -}}

{{/* Provider NAME's key: the Secret and key it comes from, or nothing (keyless). */}}
{{- define "nexus.providerKeySource" -}}
{{- $p := .provider -}}
{{- if $p.existingSecret -}}
{{ toJson (dict "name" $p.existingSecret "key" (default "api-key" $p.existingSecretKey)) }}
{{- else if $p.apiKey -}}
{{ toJson (dict "name" (include "nexus.secretName" .root) "key" (printf "provider-%s" .name)) }}
{{- end -}}
{{- end -}}

{{/* Whether the chart's own Secret has anything to hold. */}}
{{- define "nexus.ownSecretNeeded" -}}
{{- $need := or (not .Values.auth.existingSecret) (and .Values.metricsToken.value (not .Values.metricsToken.existingSecret)) -}}
{{- range $name, $p := .Values.providers -}}
{{- if and $p.apiKey (not $p.existingSecret) }}{{ $need = true }}{{ end -}}
{{- end -}}
{{- if $need }}true{{ end -}}
{{- end -}}

{{- define "nexus.metricsTokenSecret" -}}
{{- if .Values.metricsToken.existingSecret -}}
{{ toJson (dict "name" .Values.metricsToken.existingSecret "key" .Values.metricsToken.key) }}
{{- else if .Values.metricsToken.value -}}
{{ toJson (dict "name" (include "nexus.secretName" .) "key" .Values.metricsToken.key) }}
{{- end -}}
{{- end -}}
