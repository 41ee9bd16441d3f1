{{/* Chart name, overridable by nameOverride. */}}
{{- define "dask-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name when it contains the
chart name (release `dask-operator` -> `dask-operator`), else <release>-<chart>.
*/}}
{{- define "dask-operator.fullname" -}}
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

{{- define "dask-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only (a Deployment's selector is immutable). */}}
{{- define "dask-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dask-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "dask-operator.labels" -}}
helm.sh/chart: {{ include "dask-operator.chart" . }}
{{ include "dask-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dask-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dask-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dask-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Namespaces the operator watches, comma-separated; empty means all (cluster mode). Also checks what
values.schema.json checks, for `--skip-schema-validation`.
*/}}
{{- define "dask-operator.watchNamespaces" -}}
{{- if eq .Values.rbac.mode "namespaced" }}
{{- if not .Values.rbac.namespaces }}
{{- fail "rbac.namespaces must list at least one namespace when rbac.mode is namespaced" }}
{{- end }}
{{- join "," .Values.rbac.namespaces }}
{{- else if ne .Values.rbac.mode "cluster" }}
{{- fail (printf "rbac.mode must be cluster or namespaced, not %q" .Values.rbac.mode) }}
{{- end }}
{{- end }}

{{/*
The four CRDs the operator serves (and checks at start).
*/}}
{{- define "dask-operator.crdNames" -}}
- daskclusters.kubernetes.dask.org
- daskworkergroups.kubernetes.dask.org
- daskjobs.kubernetes.dask.org
- daskautoscalers.kubernetes.dask.org
{{- end }}

{{/*
THE list of what the operator does in a namespace it watches: the single source of the rules of the
cluster-mode ClusterRole and of the namespaced-mode Roles. Only the verbs the code uses; no
wildcards, no Secrets. The finalizers rules let it set blockOwnerDeletion on the owner references of
its children under the OwnerReferencesPermissionEnforcement admission plugin.
*/}}
{{- define "dask-operator.rules" -}}
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters, daskworkergroups]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [kubernetes.dask.org]
  resources: [daskjobs, daskautoscalers]
  verbs: [get, list, watch, patch]
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters/status, daskworkergroups/status, daskjobs/status, daskautoscalers/status]
  verbs: [get, patch]
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters/finalizers, daskworkergroups/finalizers, daskjobs/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Subject of every binding: the operator's ServiceAccount. */}}
{{- define "dask-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "dask-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
