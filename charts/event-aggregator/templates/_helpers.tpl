{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "event-aggregator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name when the release does not contain it.
Left room for the longest component suffix ("-migrate").
*/}}
{{- define "event-aggregator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of a component's objects. Call with (dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.componentName" -}}
{{- printf "%s-%s" (include "event-aggregator.fullname" .ctx) .component }}
{{- end }}

{{- define "event-aggregator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "event-aggregator.labels" -}}
helm.sh/chart: {{ include "event-aggregator.chart" . }}
{{ include "event-aggregator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: event-aggregator
{{- end }}

{{- define "event-aggregator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "event-aggregator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of a component's objects. Call with (dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.componentLabels" -}}
{{ include "event-aggregator.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "event-aggregator.componentSelectorLabels" -}}
{{ include "event-aggregator.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "event-aggregator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "event-aggregator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference of a component: [registry/]repository(@digest|:tag).
Call with (dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.image" -}}
{{- $global := .ctx.Values.image }}
{{- $image := (index .ctx.Values .component).image }}
{{- $registry := $image.registry | default $global.registry }}
{{- $tag := $image.tag | default $global.tag | default .ctx.Chart.AppVersion | toString }}
{{- if $registry }}{{ $registry | trimSuffix "/" }}/{{ end }}{{ $image.repository }}
{{- if $image.digest }}@{{ $image.digest }}{{ else }}:{{ $tag }}{{ end }}
{{- end }}

{{/*
Name of the Secret with the connection strings and API keys.
*/}}
{{- define "event-aggregator.secretName" -}}
{{- .Values.secret.existingSecret | default (include "event-aggregator.fullname" .) }}
{{- end }}

{{/*
The settings each binary reads from the ConfigMap (its names are the env tags of
pkg/config; the test suite holds the chart to them). AGGREGATOR_ADDR and
AGGREGATOR_MIGRATE_ON_START are set per pod, the secret settings come from the Secret.
*/}}
{{- define "event-aggregator.configKeys" -}}
{{- $log := list "AGGREGATOR_LOG_LEVEL" "AGGREGATOR_LOG_FORMAT" }}
{{- $kafka := list "AGGREGATOR_KAFKA_BROKERS" "AGGREGATOR_KAFKA_TOPIC" "AGGREGATOR_KAFKA_DLQ_TOPIC" "AGGREGATOR_KAFKA_PARTITIONS" "AGGREGATOR_KAFKA_REPLICATION_FACTOR" "AGGREGATOR_KAFKA_BATCH_TIMEOUT" }}
{{- $limits := list "AGGREGATOR_MAX_BODY_BYTES" "AGGREGATOR_MAX_EVENTS" "AGGREGATOR_MAX_PAYLOAD_BYTES" "AGGREGATOR_PUBLISH_TIMEOUT" }}
{{- $consumer := list "AGGREGATOR_KAFKA_GROUP" "AGGREGATOR_BATCH_SIZE" "AGGREGATOR_BATCH_LINGER" }}
{{- $redis := list "AGGREGATOR_LEASE_TTL" "AGGREGATOR_DEDUP_WINDOW" }}
{{- $postgres := list "AGGREGATOR_POSTGRES_MAX_CONNS" }}
{{- if eq . "ingest" }}
{{- concat $log $limits $kafka | toJson }}
{{- else if eq . "worker" }}
{{- concat $log $kafka $consumer $postgres $redis (include "event-aggregator.retentionKeys" . | fromJsonArray) | toJson }}
{{- else if eq . "query" }}
{{- concat $log $postgres (include "event-aggregator.retentionKeys" . | fromJsonArray) | toJson }}
{{- else }}
{{- fail (printf "unknown component %q" .) }}
{{- end }}
{{- end }}

{{/*
Secret settings of each binary: env name -> key in secret.keys.
*/}}
{{- define "event-aggregator.secretKeys" -}}
{{- if eq . "ingest" }}
{{- dict "AGGREGATOR_API_KEYS" "apiKeys" | toJson }}
{{- else if eq . "worker" }}
{{- dict "AGGREGATOR_API_KEYS" "apiKeys" "AGGREGATOR_POSTGRES_URL" "postgresUrl" "AGGREGATOR_REDIS_URL" "redisUrl" | toJson }}
{{- else if eq . "query" }}
{{- dict "AGGREGATOR_API_KEYS" "apiKeys" "AGGREGATOR_POSTGRES_URL" "postgresUrl" | toJson }}
{{- end }}
{{- end }}

{{/*
Environment of a component's container. Call with (dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.env" -}}
{{- $ctx := .ctx }}
{{- $values := index $ctx.Values .component }}
{{- $configMap := include "event-aggregator.fullname" $ctx -}}
- name: AGGREGATOR_ADDR
  value: {{ printf ":%v" $values.port | quote }}
{{- if ne .component "ingest" }}
# The migration hook Job applies the schema; without it each pod migrates at start.
- name: AGGREGATOR_MIGRATE_ON_START
  value: {{ (not $ctx.Values.migration.enabled) | toString | quote }}
{{- end }}
{{- range include "event-aggregator.configKeys" .component | fromJsonArray }}
- name: {{ . }}
  valueFrom:
    configMapKeyRef:
      name: {{ $configMap }}
      key: {{ . }}
{{- end }}
{{- range $env, $key := include "event-aggregator.secretKeys" .component | fromJson }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "event-aggregator.secretName" $ctx }}
      key: {{ index $ctx.Values.secret.keys $key }}
      {{- if eq $key "apiKeys" }}
      # No key, no authentication.
      optional: true
      {{- end }}
{{- end }}
{{ include "event-aggregator.runtimeEnv" (dict "ctx" $ctx "container" .component) }}
{{- include "event-aggregator.otelEnv" . }}
{{- with $ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Go runtime settings: the soft memory limit follows the container's memory limit, so the
GC works harder before the kernel kills the pod.
*/}}
{{- define "event-aggregator.runtimeEnv" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.memory
      divisor: "1"
{{- end }}

{{/*
OpenTelemetry settings of a component (the standard OTEL_* variables).
*/}}
{{- define "event-aggregator.otelEnv" -}}
{{- $otel := .ctx.Values.otel }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_SERVICE_NAME
  value: {{ .component }}
{{- $attrs := list (printf "service.namespace=%s" (include "event-aggregator.fullname" .ctx)) (printf "k8s.namespace.name=%s" .ctx.Release.Namespace) "k8s.pod.name=$(K8S_POD_NAME)" }}
{{- with $otel.resourceAttributes }}{{ $attrs = append $attrs . }}{{ end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- with $otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $otel.protocol | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $otel.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $otel.samplerArg | toString | quote }}
{{- end }}

{{/*
Pod-level settings shared by every Deployment. Call with (dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.podSpec" -}}
{{- $ctx := .ctx }}
{{- $values := index $ctx.Values .component -}}
serviceAccountName: {{ include "event-aggregator.serviceAccountName" $ctx }}
# The binaries never call the Kubernetes API.
automountServiceAccountToken: false
# Service links would add *_SERVICE_HOST/*_PORT variables nothing reads.
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
{{- with $ctx.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "event-aggregator.image" . }}
    imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
    args: ["serve"]
    ports:
      - name: http
        containerPort: {{ $values.port }}
        protocol: TCP
    env:
      {{- include "event-aggregator.env" . | nindent 6 }}
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 2
      failureThreshold: 30
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: http
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    resources:
      {{- toYaml $values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $ctx.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  # The root filesystem is read-only; /tmp stays writable for the Go runtime and libraries.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod template annotations: a change of the ConfigMap or of the chart's Secret rolls the pods.
*/}}
{{- define "event-aggregator.podAnnotations" -}}
{{- $ctx := .ctx -}}
checksum/config: {{ include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | sha256sum }}
{{- if not $ctx.Values.secret.existingSecret }}
checksum/secret: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
{{- end }}
{{- with (index $ctx.Values .component).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Data of the chart's Secret (also of the migration hook's own copy).
*/}}
{{- define "event-aggregator.secretData" -}}
{{ .Values.secret.keys.postgresUrl }}: {{ required "postgres.url is required (or secret.existingSecret)" .Values.postgres.url | b64enc | quote }}
{{ .Values.secret.keys.redisUrl }}: {{ required "redis.url is required (or secret.existingSecret)" .Values.redis.url | b64enc | quote }}
{{- with .Values.config.apiKeys }}
{{ $.Values.secret.keys.apiKeys }}: {{ join "," . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Egress allowed when networkPolicy.egress.enabled: DNS, then the configured rules.
*/}}
{{- define "event-aggregator.egressRules" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- with .Values.networkPolicy.egress.rules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Retention settings: the worker applies them, the query service shows them in /stats.
*/}}
{{- define "event-aggregator.retentionKeys" -}}
{{- list "AGGREGATOR_RETENTION" "AGGREGATOR_RETENTION_TOPICS" "AGGREGATOR_STORE_DEDUP_WINDOW" "AGGREGATOR_RETENTION_INTERVAL" "AGGREGATOR_RETENTION_BATCH" | toJson }}
{{- end }}

{{/*
retention.topics (a map topic -> duration) as AGGREGATOR_RETENTION_TOPICS reads it.
*/}}
{{- define "event-aggregator.retentionTopics" -}}
{{- $items := list }}
{{- range $topic, $d := .Values.retention.topics }}
{{- $items = append $items (printf "%s=%s" $topic $d) }}
{{- end }}
{{- join "," $items }}
{{- end }}
