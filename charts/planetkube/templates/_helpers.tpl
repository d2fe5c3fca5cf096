{{/* Labels every object of the release carries. */}}
{{- define "planetkube.labels" -}}
app.kubernetes.io/name: planetkube
app.kubernetes.io/part-of: planetkube
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The image of the one binary. */}}
{{- define "planetkube.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* Names the manager's flags default to (internal/manager). */}}
{{- define "planetkube.webhookService" -}}planetkube-webhook{{- end -}}
{{- define "planetkube.webhookConfiguration" -}}planetkube-validating-webhooks{{- end -}}

{{/*
planetkube.generated renders a file that `make manifests` copies from
config/ (what controller-gen generates from the +kubebuilder markers, or
config/rbac/user_roles.yaml): each document as it is, with the release's
labels added and the namespace planetkube-system, which the markers name,
replaced by the release's (planetkube-agent by nodeAgent.namespace). So the chart's RBAC is the generated RBAC, and
`make verify` fails when the copies drift.
*/}}
{{- define "planetkube.generated" -}}
{{- $ctx := .ctx -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" ($ctx.Files.Get .path) -1 }}
{{- $obj := fromYaml $doc }}
{{- if $obj }}
{{- $meta := $obj.metadata }}
{{- $_ := set $meta "labels" (merge (default dict $meta.labels) (include "planetkube.labels" $ctx | fromYaml)) }}
{{- if eq (default "" $meta.namespace) "planetkube-system" }}
{{- $_ := set $meta "namespace" $ctx.Release.Namespace }}
{{- else if eq (default "" $meta.namespace) "planetkube-agent" }}
{{- $_ := set $meta "namespace" $ctx.Values.nodeAgent.namespace }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The operator flags of the flow lookup pages (manager and agents). */}}
{{- define "planetkube.operatorArgs" -}}
{{- with .Values.operator.name }}
- {{ printf "--operator-name=%s" . | quote }}
{{- end }}
{{- with .Values.operator.url }}
- {{ printf "--operator-url=%s" . | quote }}
{{- end }}
{{- with .Values.operator.abuseContact }}
- {{ printf "--abuse-contact=%s" . | quote }}
{{- end }}
{{- end -}}

{{/*
planetkube.kubeScoreIgnore: the kube-score checks (make lint) a workload fails
on purpose, for its kube-score/ignore annotation, each one justified in
docs/operations.md: .checks, plus container-image-pull-policy unless
image.pullPolicy is Always (a pinned tag, and images loaded onto the nodes
without a registry). Empty when there are none.
*/}}
{{- define "planetkube.kubeScoreIgnore" -}}
{{- $checks := .checks -}}
{{- if ne .ctx.Values.image.pullPolicy "Always" }}
{{- $checks = append $checks "container-image-pull-policy" }}
{{- end }}
{{- join "," $checks -}}
{{- end -}}

{{/*
planetkube.runAs: the non-root ids of the manager's and the archiver's pods
(the image's user, image.runAsUser and image.runAsGroup), for a pod
securityContext.
*/}}
{{- define "planetkube.runAs" -}}
{{- with .Values.image.runAsUser }}
runAsUser: {{ int64 . }}
{{- end }}
{{- with .Values.image.runAsGroup }}
runAsGroup: {{ int64 . }}
{{- end }}
{{- end -}}
