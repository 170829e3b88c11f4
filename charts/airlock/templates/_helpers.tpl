{{/* Names. The default release name "airlock" gives airlock-injector, the name the injector's
own flags default to. */}}
{{- define "airlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "airlock.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "airlock.injector.fullname" -}}
{{- printf "%s-injector" (include "airlock.fullname" .) -}}
{{- end -}}

{{- define "airlock.injector.serviceAccountName" -}}
{{- default (include "airlock.injector.fullname" .) .Values.injector.serviceAccount.name -}}
{{- end -}}

{{/* Secret with the serving certificate: written by the injector (bootstrap) or cert-manager. */}}
{{- define "airlock.injector.tlsSecret" -}}
{{- printf "%s-tls" (include "airlock.injector.fullname" .) -}}
{{- end -}}

{{- define "airlock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "airlock.labels" -}}
helm.sh/chart: {{ include "airlock.chart" . }}
app.kubernetes.io/name: {{ include "airlock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: airlock
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "airlock.injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airlock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end -}}

{{- define "airlock.injector.labels" -}}
{{ include "airlock.labels" . }}
app.kubernetes.io/component: injector
{{- end -}}

{{/* repository:tag or repository@digest */}}
{{- define "airlock.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the webhooks never see. */}}
{{- define "airlock.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.excludeNamespaces -}}{{- $ns = append $ns . -}}{{- end -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{/* The objects shipped in files/admission/ (synced from the repository's crds/), one YAML
document each, as a JSON list. */}}
{{- define "airlock.admissionObjects" -}}
{{- $objs := list -}}
{{- range $path, $_ := .Files.Glob "files/admission/*.yaml" -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" ($.Files.Get $path) -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if hasKey $obj "Error" -}}{{- fail (printf "%s: %s" $path $obj.Error) -}}{{- end -}}
{{- if and $obj $obj.kind -}}{{- $objs = append $objs $obj -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $objs -}}
{{- end -}}
