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
AGGREGATOR_MIGRATE_ON_START are set per pod, file paths per mount, the secret settings
come from the Secret.
*/}}
{{- define "event-aggregator.configKeys" -}}
{{- $log := list "AGGREGATOR_LOG_LEVEL" "AGGREGATOR_LOG_FORMAT" "AGGREGATOR_SHUTDOWN_DELAY" "AGGREGATOR_SHUTDOWN_TIMEOUT" }}
{{- $kafka := list "AGGREGATOR_KAFKA_BROKERS" "AGGREGATOR_KAFKA_TOPIC" "AGGREGATOR_KAFKA_DLQ_TOPIC" "AGGREGATOR_KAFKA_PARTITIONS" "AGGREGATOR_KAFKA_REPLICATION_FACTOR" "AGGREGATOR_KAFKA_BATCH_TIMEOUT" "AGGREGATOR_KAFKA_CREATE_TOPICS" "AGGREGATOR_KAFKA_MIN_INSYNC_REPLICAS" "AGGREGATOR_KAFKA_TLS" "AGGREGATOR_KAFKA_TLS_CA_FILE" "AGGREGATOR_KAFKA_TLS_SERVER_NAME" "AGGREGATOR_KAFKA_TLS_INSECURE_SKIP_VERIFY" "AGGREGATOR_KAFKA_SASL_MECHANISM" "AGGREGATOR_KAFKA_SASL_USERNAME" }}
{{- $limits := list "AGGREGATOR_MAX_BODY_BYTES" "AGGREGATOR_MAX_EVENTS" "AGGREGATOR_MAX_PAYLOAD_BYTES" "AGGREGATOR_PUBLISH_TIMEOUT" "AGGREGATOR_RATE_LIMIT" "AGGREGATOR_RATE_BURST" }}
{{- $consumer := list "AGGREGATOR_KAFKA_GROUP" "AGGREGATOR_BATCH_SIZE" "AGGREGATOR_BATCH_LINGER" }}
{{- $redis := list "AGGREGATOR_LEASE_TTL" "AGGREGATOR_DEDUP_WINDOW" "AGGREGATOR_REDIS_TLS_CA_FILE" }}
{{- $postgres := list "AGGREGATOR_POSTGRES_MAX_CONNS" "AGGREGATOR_POSTGRES_STATEMENT_TIMEOUT" "AGGREGATOR_POSTGRES_LOCK_TIMEOUT" "AGGREGATOR_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT" }}
{{- if eq . "ingest" }}
{{- concat $log $limits $kafka | toJson }}
{{- else if eq . "worker" }}
{{- concat $log $kafka $consumer $postgres $redis (include "event-aggregator.retentionKeys" . | fromJsonArray) | toJson }}
{{- else if eq . "query" }}
{{- concat $log $postgres (list "AGGREGATOR_WORKER_METRICS_URLS") (include "event-aggregator.retentionKeys" . | fromJsonArray) | toJson }}
{{- else }}
{{- fail (printf "unknown component %q" .) }}
{{- end }}
{{- end }}

{{/*
Secret settings of each binary: env name -> key in secret.keys.
*/}}
{{- define "event-aggregator.secretKeys" -}}
{{- if eq . "ingest" }}
{{- dict "AGGREGATOR_API_KEYS" "apiKeys" "AGGREGATOR_KAFKA_SASL_PASSWORD" "kafkaSaslPassword" | toJson }}
{{- else if eq . "worker" }}
{{- dict "AGGREGATOR_API_KEYS" "apiKeys" "AGGREGATOR_POSTGRES_URL" "postgresUrl" "AGGREGATOR_REDIS_URL" "redisUrl" "AGGREGATOR_KAFKA_SASL_PASSWORD" "kafkaSaslPassword" | toJson }}
{{- else if eq . "query" }}
{{- dict "AGGREGATOR_API_KEYS" "apiKeys" "AGGREGATOR_POSTGRES_URL" "postgresUrl" | toJson }}
{{- end }}
{{- end }}

{{/*
Where the chart mounts files: the CA bundle, client certificates, the SASL password and
the API key file.
*/}}
{{- define "event-aggregator.mountRoot" -}}/etc/event-aggregator{{- end }}

{{/*
Settings that name files the chart mounts (empty when nothing is mounted). Call with
(dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.fileEnv" -}}
{{- $v := .ctx.Values }}
{{- $root := include "event-aggregator.mountRoot" . }}
{{- $env := dict }}
{{- if or (eq .component "ingest") (eq .component "worker") }}
{{- $_ := set $env "AGGREGATOR_KAFKA_TLS_CERT_FILE" (ternary (printf "%s/kafka-client/tls.crt" $root) "" (ne $v.kafka.tls.clientCertSecret "")) }}
{{- $_ := set $env "AGGREGATOR_KAFKA_TLS_KEY_FILE" (ternary (printf "%s/kafka-client/tls.key" $root) "" (ne $v.kafka.tls.clientCertSecret "")) }}
{{- $_ := set $env "AGGREGATOR_KAFKA_SASL_PASSWORD_FILE" (ternary (printf "%s/kafka-sasl/%s" $root $v.kafka.sasl.passwordKey) "" (ne $v.kafka.sasl.existingSecret "")) }}
{{- end }}
{{- if eq .component "worker" }}
{{- $_ := set $env "AGGREGATOR_REDIS_TLS_CERT_FILE" (ternary (printf "%s/redis-client/tls.crt" $root) "" (ne $v.redis.tls.clientCertSecret "")) }}
{{- $_ := set $env "AGGREGATOR_REDIS_TLS_KEY_FILE" (ternary (printf "%s/redis-client/tls.key" $root) "" (ne $v.redis.tls.clientCertSecret "")) }}
{{- end }}
{{- if or (eq .component "ingest") (eq .component "query") }}
{{- $_ := set $env "AGGREGATOR_API_KEYS_FILE" (ternary (printf "%s/api-keys/%s" $root $v.config.apiKeysFile.key) "" (ne $v.config.apiKeysFile.existingSecret "")) }}
{{- end }}
{{- toJson $env }}
{{- end }}

{{/*
Volumes (or, with "mounts", volume mounts) of the files a component reads. Call with
(dict "ctx" $ "component" "ingest" "mounts" true).
*/}}
{{- define "event-aggregator.fileVolumes" -}}
{{- $v := .ctx.Values }}
{{- $root := include "event-aggregator.mountRoot" . }}
{{- $vols := list }}
{{- if $v.caBundle.secretName }}
{{- $vols = append $vols (dict "name" "ca-bundle" "path" "ca" "volume" (dict "secret" (dict "secretName" $v.caBundle.secretName))) }}
{{- else if $v.caBundle.configMapName }}
{{- $vols = append $vols (dict "name" "ca-bundle" "path" "ca" "volume" (dict "configMap" (dict "name" $v.caBundle.configMapName))) }}
{{- end }}
{{- if or (eq .component "ingest") (eq .component "worker") }}
{{- with $v.kafka.tls.clientCertSecret }}
{{- $vols = append $vols (dict "name" "kafka-client" "path" "kafka-client" "volume" (dict "secret" (dict "secretName" . "defaultMode" 288))) }}
{{- end }}
{{- with $v.kafka.sasl.existingSecret }}
{{- $vols = append $vols (dict "name" "kafka-sasl" "path" "kafka-sasl" "volume" (dict "secret" (dict "secretName" . "defaultMode" 288))) }}
{{- end }}
{{- end }}
{{- if eq .component "worker" }}
{{- with $v.redis.tls.clientCertSecret }}
{{- $vols = append $vols (dict "name" "redis-client" "path" "redis-client" "volume" (dict "secret" (dict "secretName" . "defaultMode" 288))) }}
{{- end }}
{{- end }}
{{- if or (eq .component "ingest") (eq .component "query") }}
{{- with $v.config.apiKeysFile.existingSecret }}
{{- /* A directory mount, not subPath: the kubelet updates it and the binaries reload the file. */}}
{{- $vols = append $vols (dict "name" "api-keys" "path" "api-keys" "volume" (dict "secret" (dict "secretName" . "defaultMode" 288))) }}
{{- end }}
{{- end }}
{{- range $vols }}
{{- if $.mounts }}
- name: {{ .name }}
  mountPath: {{ printf "%s/%s" $root .path }}
  readOnly: true
{{- else }}
- name: {{ .name }}
  {{- toYaml .volume | nindent 2 }}
{{- end }}
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
{{- range $env, $path := include "event-aggregator.fileEnv" . | fromJson }}
- name: {{ $env }}
  value: {{ $path | quote }}
{{- end }}
{{- range $env, $key := include "event-aggregator.secretKeys" .component | fromJson }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "event-aggregator.secretName" $ctx }}
      key: {{ index $ctx.Values.secret.keys $key }}
      {{- if or (eq $key "apiKeys") (eq $key "kafkaSaslPassword") }}
      # Optional: no key, no authentication.
      optional: true
      {{- end }}
{{- end }}
{{- include "event-aggregator.runtimeEnv" (dict "ctx" $ctx "resources" $values.resources) }}
{{- include "event-aggregator.otelEnv" . }}
{{- with $ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
A memory quantity (e.g. 512Mi, 1G, 268435456) in bytes; only the suffixes the schema admits.
*/}}
{{- define "event-aggregator.bytes" -}}
{{- $q := toString . }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $unit := trimPrefix $num $q }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if or (not $num) (not (hasKey $units $unit)) }}
{{- fail (printf "memory quantity %q: want a number with an optional k, M, G, T, Ki, Mi, Gi or Ti suffix" $q) }}
{{- end }}
{{- mulf (float64 $num) (index $units $unit) | floor | int64 }}
{{- end }}

{{/*
Go runtime settings: the soft memory limit is a share of the container's memory limit
(config.goMemLimitPercent), so the GC works harder before the kernel kills the pod and
memory outside the Go heap (stacks, buffers of cgo-free libraries, the runtime) has room.
No limit, no GOMEMLIMIT. Call with (dict "ctx" $ "resources" <resources>).
*/}}
{{- define "event-aggregator.runtimeEnv" -}}
{{- $limit := dig "limits" "memory" "" (.resources | default dict) }}
{{- if $limit }}
{{- $bytes := include "event-aggregator.bytes" $limit | float64 }}
{{- $mib := divf (mulf $bytes .ctx.Values.config.goMemLimitPercent) (mulf 100 1048576) | floor | int64 }}
- name: GOMEMLIMIT
  value: {{ printf "%dMiB" $mib | quote }}
{{- end }}
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
A probe: the chart's settings with the component's overrides merged over them.
Call with (dict "default" <probe> "override" <probe>).
*/}}
{{- define "event-aggregator.probe" -}}
{{- toYaml (mergeOverwrite (deepCopy .default) (.override | default dict)) }}
{{- end }}

{{/*
Pod-level settings shared by every Deployment. Call with (dict "ctx" $ "component" "ingest").
*/}}
{{- define "event-aggregator.podSpec" -}}
{{- $ctx := .ctx }}
{{- $values := index $ctx.Values .component -}}
{{- include "event-aggregator.validate" $ctx -}}
serviceAccountName: {{ include "event-aggregator.serviceAccountName" $ctx }}
# The binaries never call the Kubernetes API.
automountServiceAccountToken: false
# Service links would add *_SERVICE_HOST/*_PORT variables nothing reads.
enableServiceLinks: false
# More than the shutdown delay plus timeout of the binary (checked at render time). No
# preStop hook: on SIGTERM the binary itself turns unready and keeps serving for the delay.
terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
{{- with $ctx.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.initContainers }}
initContainers:
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
    {{- with $values.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- $http := dict "path" "/healthz" "port" "http" }}
    startupProbe:
      {{- include "event-aggregator.probe" (dict "default" (dict "httpGet" $http "periodSeconds" 2 "failureThreshold" 30) "override" $values.probes.startup) | nindent 6 }}
    livenessProbe:
      {{- include "event-aggregator.probe" (dict "default" (dict "httpGet" $http "periodSeconds" 10 "timeoutSeconds" 2 "failureThreshold" 3) "override" $values.probes.liveness) | nindent 6 }}
    readinessProbe:
      {{- include "event-aggregator.probe" (dict "default" (dict "httpGet" (dict "path" "/readyz" "port" "http") "periodSeconds" 5 "timeoutSeconds" 2 "failureThreshold" 2) "override" $values.probes.readiness) | nindent 6 }}
    resources:
      {{- toYaml $values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $ctx.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- include "event-aggregator.fileVolumes" (dict "ctx" $ctx "component" .component "mounts" true) | nindent 6 }}
      {{- with $values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  # The root filesystem is read-only; /tmp stays writable for the Go runtime and libraries.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- include "event-aggregator.fileVolumes" (dict "ctx" $ctx "component" .component "mounts" false) | nindent 2 }}
  {{- with $values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
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
{{- if $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $values.topologySpreadConstraints | nindent 2 }}
{{- else if $ctx.Values.defaultTopologySpread }}
# Replicas spread over nodes and zones where the cluster allows (never blocks scheduling).
topologySpreadConstraints:
  {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "event-aggregator.componentSelectorLabels" (dict "ctx" $ctx "component" $.component) | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
  {{- end }}
{{- end }}
{{- end }}

{{/*
Pod template annotations: a change of the settings a component reads (its ConfigMap keys,
its keys of the chart's Secret) rolls that component's pods, and only them.
*/}}
{{- define "event-aggregator.podAnnotations" -}}
{{- $ctx := .ctx -}}
{{- $data := (include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | fromYaml).data }}
{{- $mine := dict }}
{{- range include "event-aggregator.configKeys" .component | fromJsonArray }}
{{- $_ := set $mine . (index $data .) }}
{{- end }}
checksum/config: {{ toJson $mine | sha256sum }}
{{- if not $ctx.Values.secret.existingSecret }}
{{- $secret := include "event-aggregator.secretData" $ctx | fromYaml }}
{{- $mySecret := dict }}
{{- range $env, $key := include "event-aggregator.secretKeys" .component | fromJson }}
{{- $k := index $ctx.Values.secret.keys $key }}
{{- $_ := set $mySecret $k (get $secret $k) }}
{{- end }}
checksum/secret: {{ toJson $mySecret | sha256sum }}
{{- end }}
{{- with (index $ctx.Values .component).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Data of the chart's Secret (also of the migration hook's own copy).
*/}}
{{- define "event-aggregator.secretData" -}}
{{ .Values.secret.keys.postgresUrl }}: {{ required "postgres.url is required: the Postgres connection URL, e.g. postgres://user:password@host:5432/db?sslmode=verify-full (or set secret.existingSecret)" .Values.postgres.url | b64enc | quote }}
{{ .Values.secret.keys.redisUrl }}: {{ required "redis.url is required: the Redis URL, e.g. redis://host:6379/0 (or set secret.existingSecret)" .Values.redis.url | b64enc | quote }}
{{- with .Values.config.apiKeys }}
{{ $.Values.secret.keys.apiKeys }}: {{ join "," . | b64enc | quote }}
{{ $.Values.secret.keys.testApiKey }}: {{ first . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Checks across values that the schema cannot express; a failed check stops the render
with a message naming the values.
*/}}
{{- define "event-aggregator.validate" -}}
{{- $v := .Values }}
{{- $partitions := int $v.kafka.partitions }}
{{- $hpa := $v.worker.autoscaling }}
{{- if and $hpa.enabled (not $v.worker.keda.enabled) }}
{{- if gt (int $hpa.minReplicas) (int $hpa.maxReplicas) }}
{{- fail (printf "worker.autoscaling.minReplicas (%v) is above worker.autoscaling.maxReplicas (%v)" $hpa.minReplicas $hpa.maxReplicas) }}
{{- end }}
{{- if gt (int $hpa.maxReplicas) $partitions }}
{{- fail (printf "worker.autoscaling.maxReplicas (%v) is above kafka.partitions (%v): a worker without a partition idles" $hpa.maxReplicas $partitions) }}
{{- end }}
{{- end }}
{{- if $v.worker.keda.enabled }}
{{- if gt (int $v.worker.keda.minReplicaCount) (int $v.worker.keda.maxReplicaCount) }}
{{- fail (printf "worker.keda.minReplicaCount (%v) is above worker.keda.maxReplicaCount (%v)" $v.worker.keda.minReplicaCount $v.worker.keda.maxReplicaCount) }}
{{- end }}
{{- if and (or $v.kafka.tls.enabled (ne $v.kafka.sasl.mechanism "none")) (not $v.worker.keda.authenticationRef) }}
{{- fail "worker.keda.authenticationRef is required with kafka.tls or kafka.sasl: KEDA reads the lag from Kafka itself and needs a TriggerAuthentication with the same TLS and SASL settings" }}
{{- end }}
{{- if gt (int $v.worker.keda.maxReplicaCount) $partitions }}
{{- fail (printf "worker.keda.maxReplicaCount (%v) is above kafka.partitions (%v): a worker without a partition idles" $v.worker.keda.maxReplicaCount $partitions) }}
{{- end }}
{{- end }}
{{- if and (not $hpa.enabled) (not $v.worker.keda.enabled) (gt (int $v.worker.replicas) $partitions) }}
{{- fail (printf "worker.replicas (%v) is above kafka.partitions (%v): a worker without a partition idles" $v.worker.replicas $partitions) }}
{{- end }}
{{- if gt (int $v.ingest.maxPayloadBytes) (int64 $v.ingest.maxBodyBytes) }}
{{- fail (printf "ingest.maxPayloadBytes (%v) is above ingest.maxBodyBytes (%v)" $v.ingest.maxPayloadBytes $v.ingest.maxBodyBytes) }}
{{- end }}
{{- $stop := add $v.config.shutdownDelaySeconds $v.config.shutdownTimeoutSeconds }}
{{- range list "ingest" "worker" "query" }}
{{- $grace := int (index $v . "terminationGracePeriodSeconds") }}
{{- if le $grace (int $stop) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed config.shutdownDelaySeconds + config.shutdownTimeoutSeconds (%d), or the kubelet kills pods mid-drain" . $grace (int $stop)) }}
{{- end }}
{{- end }}
{{- if and $v.caBundle.secretName $v.caBundle.configMapName }}
{{- fail "caBundle: set secretName or configMapName, not both" }}
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
Scaling behaviour of the workers (HPA and KEDA): every scale step rebalances the consumer
group, so scale-up is rate-limited and scale-down slow.
*/}}
{{- define "event-aggregator.scaleBehavior" -}}
scaleUp:
  stabilizationWindowSeconds: {{ .Values.worker.autoscaling.scaleUpStabilizationSeconds }}
  selectPolicy: Min
  policies:
    - type: Pods
      value: {{ .Values.worker.autoscaling.scaleUpPods }}
      periodSeconds: 60
scaleDown:
  stabilizationWindowSeconds: 300
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
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
