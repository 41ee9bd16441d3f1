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
cluster-mode ClusterRole and of the namespaced-mode Roles. Exactly the verbs the code uses, no
wildcards, no Secrets. Every kind is watched (list, watch); children are written by server-side apply
(patch, and create when the child is new). Two rules come from the OwnerReferencesPermissionEnforcement
admission plugin rather than from a call: changing the owner references of an existing object needs
delete on it (adopting a user's DaskWorkerGroup or DaskAutoscaler, restoring an owner reference
removed by hand), and setting blockOwnerDeletion on a child's owner reference needs update on the
owner's finalizers.
*/}}
{{- define "dask-operator.rules" -}}
{{- /* get: a job's cluster the cache does not show yet; delete: a finished job's cluster. */}}
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters]
  verbs: [get, list, watch, create, patch, delete]
{{- /* create: default groups; delete: owner references (adoption, repair). */}}
- apiGroups: [kubernetes.dask.org]
  resources: [daskworkergroups]
  verbs: [list, watch, create, patch, delete]
{{- /* patch: adoption, kopf's leftovers; delete: owner references (adoption). */}}
- apiGroups: [kubernetes.dask.org]
  resources: [daskautoscalers]
  verbs: [list, watch, patch, delete]
{{- /* patch: kopf's leftovers; delete: a finished job past its ttlSecondsAfterFinished. */}}
- apiGroups: [kubernetes.dask.org]
  resources: [daskjobs]
  verbs: [list, watch, patch, delete]
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters/status, daskworkergroups/status, daskjobs/status, daskautoscalers/status]
  verbs: [patch]
{{- /* The owners of children: clusters (scheduler, Service, groups), groups (workers), jobs. */}}
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters/finalizers, daskworkergroups/finalizers, daskjobs/finalizers]
  verbs: [update]
{{- /* delete: workers on scale-down; owner references (repair). */}}
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
{{- /* delete: owner references (repair). */}}
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
{{- /* The scheduler's HTTP API through the API server (an operator outside the cluster): get, and */}}
{{- /* create for POST (retire_workers). */}}
- apiGroups: [""]
  resources: [services/proxy]
  verbs: [get, create]
{{- /* Job runners, created once; get: a runner the cache does not show yet; patch: stopping one. */}}
{{- /* delete: a suspended job's runner, attempts beyond the kept ones. */}}
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
