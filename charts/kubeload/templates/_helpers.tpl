{{/*
Name of every resource of the release.
*/}}
{{- define "kubeload.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "kubeload" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kubeload" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubeload.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object. `app.kubernetes.io/name: kubeload` and `app.kubernetes.io/component:
operator` on the operator pod are what each LoadTest's Redis NetworkPolicy lets in.
*/}}
{{- define "kubeload.labels" -}}
helm.sh/chart: {{ include "kubeload.chart" . }}
app.kubernetes.io/name: kubeload
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeload
{{- end -}}

{{- define "kubeload.selectorLabels" -}}
app.kubernetes.io/name: kubeload
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubeload.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeload.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubeload.operatorImage" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "kubeload.workerImage" -}}
{{- printf "%s:%s" .Values.worker.image.repository (default .Chart.AppVersion .Values.worker.image.tag) -}}
{{- end -}}

{{- define "kubeload.redisImage" -}}
{{- printf "%s:%s" .Values.redis.image.repository .Values.redis.image.tag -}}
{{- end -}}

{{- define "kubeload.testImage" -}}
{{- if .Values.tests.image.repository -}}
{{- printf "%s:%s" .Values.tests.image.repository (default .Chart.AppVersion .Values.tests.image.tag) -}}
{{- else -}}
{{- printf "%s:%s" .Values.worker.image.repository (default (default .Chart.AppVersion .Values.worker.image.tag) .Values.tests.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The watched namespaces, checked: rbac.namespaced needs an explicit list.
*/}}
{{- define "kubeload.watchNamespaces" -}}
{{- if and .Values.rbac.namespaced (empty .Values.watchNamespaces) -}}
{{- fail "rbac.namespaced=true needs watchNamespaces: the operator is only granted rights in those namespaces" -}}
{{- end -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}

{{/*
RBAC rules on namespaced resources: exactly the calls of src/kubeload/operator/kube.py and kopf
(the e2e suite runs the operator with these rules only). Granted cluster-wide by the ClusterRole,
or per watched namespace by Roles.
*/}}
{{- define "kubeload.namespacedRules" -}}
# kopf lists and watches the LoadTests and patches its annotations on them; the operator deletes
# a LoadTest once spec.cleanup.ttlSecondsAfterFinished has passed.
- apiGroups: ["kubeload.dev"]
  resources: ["loadtests"]
  verbs: ["list", "watch", "patch", "delete"]
- apiGroups: ["kubeload.dev"]
  resources: ["loadtests/status"]
  verbs: ["patch"]
# The children of a LoadTest, created (or adopted) and deleted by the cleanup policy: Redis and
# refresher Deployments, Redis Service and NetworkPolicy, the run Secret, the workers' Indexed
# Job (whose parallelism follows the stages) and the summary ConfigMap (kept after the end).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "secrets"]
  verbs: ["get", "create", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
# Pods are listed to explain failures (Unschedulable, ImagePullBackOff, OOMKilled).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# One Event per transition of a LoadTest.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
