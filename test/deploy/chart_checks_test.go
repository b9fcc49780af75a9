package deploy

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

func intValue(values map[string]any, path string) int {
	switch v := value(values, path).(type) {
	case float64:
		return int(v)
	case int:
		return v
	case int64:
		return int(v)
	}
	return 0
}

func mapValue(values map[string]any, path string) map[string]any {
	m, _ := value(values, path).(map[string]any)
	return m
}

func listValue(values map[string]any, path string) []any {
	l, _ := value(values, path).([]any)
	return l
}

// names returns the "name" field of each map in a values list.
func names(list []any) []string {
	var out []string
	for _, item := range list {
		if m, ok := item.(map[string]any); ok {
			out = append(out, fmt.Sprint(m["name"]))
		}
	}
	return out
}

// checkHPA holds the worker HPA to lag-based, bounded, rate-limited scaling.
func checkHPA(t *testing.T, c chartCase, h *autoscalingv2.HorizontalPodAutoscaler, worker *appsv1.Deployment) {
	t.Helper()
	owner := "HPA " + h.Name
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != worker.Name {
		t.Errorf("%s targets %s %s, want the worker Deployment", owner, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
	}
	partitions := intValue(c.values, "kafka.partitions")
	if int(h.Spec.MaxReplicas) > partitions {
		t.Errorf("%s: maxReplicas %d above kafka.partitions %d", owner, h.Spec.MaxReplicas, partitions)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		t.Errorf("%s: minReplicas %v above maxReplicas %d", owner, h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	if len(h.Spec.Metrics) != 1 {
		t.Fatalf("%s: %d metrics, want the one lag metric", owner, len(h.Spec.Metrics))
	}
	m := h.Spec.Metrics[0]
	wantName := stringValue(c.values, "worker.autoscaling.metricName")
	wantTarget := resource.MustParse(fmt.Sprint(intValue(c.values, "worker.autoscaling.targetLagPerReplica")))
	var id *autoscalingv2.MetricIdentifier
	var target *autoscalingv2.MetricTarget
	switch {
	case m.Type == autoscalingv2.ExternalMetricSourceType && m.External != nil:
		id, target = &m.External.Metric, &m.External.Target
		// A selector keeps other releases' workers in the namespace out of the sum.
		if id.Selector == nil || (len(id.Selector.MatchLabels) == 0 && len(id.Selector.MatchExpressions) == 0) {
			t.Errorf("%s: External metric without a selector sums every release's lag", owner)
		}
	case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil:
		id, target = &m.Pods.Metric, &m.Pods.Target
	default:
		t.Fatalf("%s: metric %+v, want the External or Pods lag metric", owner, m)
	}
	if string(m.Type) != stringValue(c.values, "worker.autoscaling.metricType") {
		t.Errorf("%s: metric type %s, want worker.autoscaling.metricType %s", owner, m.Type, stringValue(c.values, "worker.autoscaling.metricType"))
	}
	if id.Name != wantName {
		t.Errorf("%s: metric %s, want %s", owner, id.Name, wantName)
	}
	if target.Type != autoscalingv2.AverageValueMetricType || target.AverageValue == nil || target.AverageValue.Cmp(wantTarget) != 0 {
		t.Errorf("%s: target %+v, want an average value of %s per worker", owner, target, wantTarget.String())
	}
	checkScaleBehavior(t, c, owner, h.Spec.Behavior)
}

// checkScaleBehavior requires rate-limited scale-up: every step rebalances the group.
func checkScaleBehavior(t *testing.T, c chartCase, owner string, b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
	t.Helper()
	if b == nil || b.ScaleUp == nil || len(b.ScaleUp.Policies) == 0 {
		t.Errorf("%s: scale-up is not rate-limited (no behavior.scaleUp policies)", owner)
		return
	}
	for _, p := range b.ScaleUp.Policies {
		if p.Type != autoscalingv2.PodsScalingPolicy || int(p.Value) > intValue(c.values, "worker.autoscaling.scaleUpPods") {
			t.Errorf("%s: scale-up policy %+v, want at most worker.autoscaling.scaleUpPods pods per period", owner, p)
		}
	}
	if b.ScaleDown == nil || len(b.ScaleDown.Policies) == 0 {
		t.Errorf("%s: scale-down is not rate-limited", owner)
	}
}

func peersJSON(t *testing.T, peers any) []string {
	t.Helper()
	var out []string
	list, _ := peers.([]any)
	for _, p := range list {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var peer networkingv1.NetworkPolicyPeer
		if err := json.Unmarshal(b, &peer); err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(peer)
		out = append(out, string(b))
	}
	return out
}

// checkNetworkPolicies checks that Prometheus (networkPolicy.metricsFrom) reaches /metrics of
// every component, although ingest and query serve it on their API port, and that the helm
// test Pod reaches ingest and query.
func checkNetworkPolicies(t *testing.T, c chartCase, objs []object, fullname string) {
	t.Helper()
	apiFrom := peersJSON(t, value(c.values, "networkPolicy.apiFrom"))
	metricsFrom := peersJSON(t, value(c.values, "networkPolicy.metricsFrom"))
	var testLabels map[string]string
	for _, p := range find[corev1.Pod](objs) {
		testLabels = p.Labels
	}
	for _, comp := range components {
		np := byName[networkingv1.NetworkPolicy](objs, fullname+"-"+comp.name)
		if np == nil {
			continue
		}
		var from []string
		open := false
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				open = true
			}
			for _, p := range rule.From {
				b, _ := json.Marshal(p)
				from = append(from, string(b))
				if comp.name != "worker" && p.PodSelector != nil && testLabels != nil && selects(p.PodSelector.MatchLabels, testLabels) {
					from = append(from, "test-pod")
				}
			}
		}
		if open {
			continue
		}
		want := metricsFrom
		if comp.name != "worker" {
			want = append(slices.Clone(apiFrom), metricsFrom...)
			if testLabels != nil {
				want = append(want, "test-pod")
			}
		}
		for _, w := range want {
			if !slices.Contains(from, w) {
				t.Errorf("NetworkPolicy %s does not admit %s (admits %v)", np.Name, w, from)
			}
		}
	}
}

// checkTestPod checks the helm test hook: a restricted Pod running the publisher against
// the release's ingest and query Services.
func checkTestPod(t *testing.T, c chartCase, objs []object, fullname string, checkEnvSources func(string, []corev1.EnvVar, bool)) {
	t.Helper()
	var tests []*corev1.Pod
	for _, p := range find[corev1.Pod](objs) {
		if p.Annotations["helm.sh/hook"] == "test" {
			tests = append(tests, p)
		}
	}
	if len(tests) != 1 {
		t.Fatalf("%d helm test Pods, want 1", len(tests))
	}
	pod := tests[0]
	owner := "Pod " + pod.Name
	checkPodTemplate(t, owner, nil, &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec})
	checkRestricted(t, owner, &pod.Spec)
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %s, want Never (a test runs once)", owner, pod.Spec.RestartPolicy)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", owner, len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	checkEnvSources(owner, ctr.Env, false)
	flags := publisherFlags(ctr.Args)
	for flag, comp := range map[string]string{"--url": "ingest", "--query-url": "query"} {
		u, err := url.Parse(flags[flag])
		svc := fullname + "-" + comp
		if err != nil || u.Hostname() != svc || !hasServicePort(objs, svc, port(t, ":"+u.Port())) {
			t.Errorf("%s: %s=%q, want the %s Service and port", owner, flag, flags[flag], svc)
		}
	}
	if flags["--events"] != fmt.Sprint(intValue(c.values, "tests.events")) {
		t.Errorf("%s: --events=%q, want tests.events", owner, flags["--events"])
	}
}

// publisherFlags maps --flag=value arguments to their values.
func publisherFlags(args []string) map[string]string {
	flags := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	return flags
}

// checkMonitoring checks that the PrometheusRule and the dashboard ConfigMap carry the
// chart's files/ unchanged, and only when enabled.
func checkMonitoring(t *testing.T, c chartCase, objs []object) {
	t.Helper()
	rules := find[monitoringv1.PrometheusRule](objs)
	if want := boolValue(c.values, "prometheusRule.enabled"); want != (len(rules) == 1) {
		t.Errorf("prometheusRule.enabled=%v, yet %d PrometheusRules", want, len(rules))
	}
	for _, r := range rules {
		var file monitoringv1.PrometheusRuleSpec
		data, err := os.ReadFile(repoPath(chartDir, "files", "alerts.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, &file); err != nil {
			t.Fatalf("files/alerts.yaml: %v", err)
		}
		if !reflect.DeepEqual(r.Spec, file) {
			t.Errorf("PrometheusRule %s differs from files/alerts.yaml", r.Name)
		}
		for k, v := range mapValue(c.values, "prometheusRule.labels") {
			if r.Labels[k] != fmt.Sprint(v) {
				t.Errorf("PrometheusRule %s: label %s=%q, want %v", r.Name, k, r.Labels[k], v)
			}
		}
	}
	var dashboards []*corev1.ConfigMap
	for _, cm := range find[corev1.ConfigMap](objs) {
		if strings.HasSuffix(cm.Name, "-dashboard") {
			dashboards = append(dashboards, cm)
		}
	}
	if want := boolValue(c.values, "grafanaDashboard.enabled"); want != (len(dashboards) == 1) {
		t.Errorf("grafanaDashboard.enabled=%v, yet %d dashboard ConfigMaps", want, len(dashboards))
	}
	for _, cm := range dashboards {
		file, err := os.ReadFile(repoPath(chartDir, "files", "dashboard.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(cm.Data) != 1 || strings.TrimSpace(cm.Data["event-aggregator.json"]) != strings.TrimSpace(string(file)) {
			t.Errorf("ConfigMap %s does not carry files/dashboard.json as event-aggregator.json", cm.Name)
		}
		for k, v := range mapValue(c.values, "grafanaDashboard.labels") {
			if cm.Labels[k] != fmt.Sprint(v) {
				t.Errorf("ConfigMap %s: label %s=%q, want %v (Grafana's sidecar selects by it)", cm.Name, k, cm.Labels[k], v)
			}
		}
	}
}

// checkExtensions checks that a component's (or the migration Job's) extension values land
// in its pod: priority class, init containers, volumes, mounts, env, envFrom, probes.
func checkExtensions(t *testing.T, c chartCase, key, owner string, pod *corev1.PodSpec, ctr *corev1.Container) {
	t.Helper()
	if want := stringValue(c.values, key+".priorityClassName"); pod.PriorityClassName != want {
		t.Errorf("%s: priorityClassName %q, want %q", owner, pod.PriorityClassName, want)
	}
	var inits, vols, mounts, env []string
	for _, ic := range pod.InitContainers {
		inits = append(inits, ic.Name)
	}
	for _, v := range pod.Volumes {
		vols = append(vols, v.Name)
	}
	for _, m := range ctr.VolumeMounts {
		mounts = append(mounts, m.Name)
	}
	for _, e := range ctr.Env {
		env = append(env, e.Name)
	}
	for what, pair := range map[string][2][]string{
		"initContainers":    {names(listValue(c.values, key+".initContainers")), inits},
		"extraVolumes":      {names(listValue(c.values, key+".extraVolumes")), vols},
		"extraVolumeMounts": {names(listValue(c.values, key+".extraVolumeMounts")), mounts},
		"extraEnv":          {append(names(listValue(c.values, "extraEnv")), names(listValue(c.values, key+".extraEnv"))...), env},
	} {
		for _, n := range pair[0] {
			if !slices.Contains(pair[1], n) {
				t.Errorf("%s: %s.%s names %s, not rendered (have %v)", owner, key, what, n, pair[1])
			}
		}
	}
	if want := len(listValue(c.values, key+".extraEnvFrom")); len(ctr.EnvFrom) != want {
		t.Errorf("%s: %d envFrom sources, want %s.extraEnvFrom's %d", owner, len(ctr.EnvFrom), key, want)
	}
	for probe, rendered := range map[string]*corev1.Probe{"startup": ctr.StartupProbe, "liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe} {
		override := mapValue(c.values, key+".probes."+probe)
		if len(override) == 0 {
			continue
		}
		b, _ := json.Marshal(rendered)
		got := map[string]any{}
		_ = json.Unmarshal(b, &got)
		for field, want := range override {
			if fmt.Sprint(got[field]) != fmt.Sprint(want) {
				t.Errorf("%s: %s probe %s=%v, want the override %v", owner, probe, field, got[field], want)
			}
		}
	}
}

// checkFileSettings checks that every *_FILE setting with a value (inline or from the
// ConfigMap) names a path under one of the container's mounts, and that every mount has
// its volume: a wrong path would only show as a crash on a cluster.
func checkFileSettings(t *testing.T, owner string, pod *corev1.PodSpec, ctr corev1.Container, configMaps map[string]map[string]string) {
	t.Helper()
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	for _, m := range ctr.VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("%s: mount %s has no volume", owner, m.Name)
		}
	}
	for _, e := range ctr.Env {
		if !strings.HasSuffix(e.Name, "_FILE") {
			continue
		}
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			v = configMaps[e.ValueFrom.ConfigMapKeyRef.Name][e.ValueFrom.ConfigMapKeyRef.Key]
		}
		if v == "" {
			continue
		}
		mounted := slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
			return strings.HasPrefix(v, strings.TrimSuffix(m.MountPath, "/")+"/")
		})
		if !mounted {
			t.Errorf("%s: %s=%s is under none of the container's mounts", owner, e.Name, v)
		}
	}
}

// checkPodScheduling checks the default topology spread and that the grace period outlasts
// the binary's shutdown delay plus timeout.
func checkPodScheduling(t *testing.T, c chartCase, comp, owner string, tpl *corev1.PodTemplateSpec) {
	t.Helper()
	own := listValue(c.values, comp+".topologySpreadConstraints")
	spread := tpl.Spec.TopologySpreadConstraints
	switch {
	case len(own) > 0:
		if len(spread) != len(own) {
			t.Errorf("%s: %d topology spread constraints, want the %d of %s.topologySpreadConstraints", owner, len(spread), len(own), comp)
		}
	case boolValue(c.values, "defaultTopologySpread"):
		keys := map[string]bool{}
		for _, s := range spread {
			if s.LabelSelector == nil || !selects(s.LabelSelector.MatchLabels, tpl.Labels) {
				t.Errorf("%s: spread constraint %s does not select the component's pods", owner, s.TopologyKey)
			}
			if s.WhenUnsatisfiable != corev1.ScheduleAnyway {
				t.Errorf("%s: default spread on %s may block scheduling (%s)", owner, s.TopologyKey, s.WhenUnsatisfiable)
			}
			keys[s.TopologyKey] = true
		}
		if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
			t.Errorf("%s: default spread over %v, want nodes and zones", owner, keys)
		}
	default:
		if len(spread) != 0 {
			t.Errorf("%s: spread constraints without defaultTopologySpread or %s.topologySpreadConstraints", owner, comp)
		}
	}
	stop := int64(intValue(c.values, "config.shutdownDelaySeconds") + intValue(c.values, "config.shutdownTimeoutSeconds"))
	if g := tpl.Spec.TerminationGracePeriodSeconds; g == nil || *g <= stop {
		t.Errorf("%s: terminationGracePeriodSeconds %v does not outlast the shutdown delay plus timeout (%ds)", owner, g, stop)
	}
}

// checkGoMemLimit checks GOMEMLIMIT against the container's memory limit: the configured
// share of it, rounded down to MiB, or unset without a limit.
func checkGoMemLimit(t *testing.T, c chartCase, owner string, ctr corev1.Container) {
	t.Helper()
	var got *corev1.EnvVar
	for i := range ctr.Env {
		if ctr.Env[i].Name == "GOMEMLIMIT" {
			got = &ctr.Env[i]
		}
	}
	limit, ok := ctr.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		if got != nil {
			t.Errorf("%s: GOMEMLIMIT=%q without a memory limit", owner, got.Value)
		}
		return
	}
	pct := intValue(c.values, "config.goMemLimitPercent")
	want := fmt.Sprintf("%dMiB", int64(math.Floor(float64(limit.Value())*float64(pct)/100/(1<<20))))
	if got == nil || got.ValueFrom != nil || got.Value != want {
		t.Errorf("%s: GOMEMLIMIT %+v, want %s (%d%% of the %s limit)", owner, got, want, pct, limit.String())
	}
	if pct >= 100 {
		t.Errorf("%s: config.goMemLimitPercent %d leaves no headroom", owner, pct)
	}
}

// TestHelmDefaultsCarryNoCredential checks that values.yaml ships no password and that the
// defaults alone do not render: the Postgres and Redis URLs are required.
func TestHelmDefaultsCarryNoCredential(t *testing.T) {
	var leaves []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				walk(path+"."+k, child)
			}
		case []any:
			for i, child := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
		case string:
			if u, err := url.Parse(v); err == nil && u.User != nil {
				if _, set := u.User.Password(); set {
					leaves = append(leaves, path)
				}
			}
		}
	}
	walk("", readYAML(t, repoPath(chartDir, "values.yaml")))
	if len(leaves) > 0 {
		t.Errorf("values.yaml carries a password in %v", leaves)
	}
	_, err := run(t, time.Minute, repoRoot, helm(t), "template", release, chartDir, "--namespace", ns, "--kube-version", kubeVersion)
	if err == nil || !strings.Contains(err.Error(), "postgres.url is required") {
		t.Errorf("helm template with the defaults: %v, want a failure naming postgres.url", err)
	}
	// The defaults with the required URLs: no rendered object carries a password.
	out, err := run(t, time.Minute, repoRoot, helm(t), "template", release, chartDir, "--namespace", ns, "--kube-version", kubeVersion,
		"--set", "postgres.url=postgres://app@db:5432/app", "--set", "redis.url=redis://cache:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`://[^\s/@:"]+:[^\s/@"]+@`).Find(out); m != nil {
		t.Errorf("the default render carries a credential: %s", m)
	}
}

// TestHelmChecksumPerComponent checks that a setting of one component rolls only that
// component's pods.
func TestHelmChecksumPerComponent(t *testing.T) {
	base := chartCase{name: "default", file: filepath.Join(chartDir, "ci", "default-values.yaml")}
	sums := func(extra ...string) map[string][2]string {
		out := map[string][2]string{}
		for _, d := range find[appsv1.Deployment](render(t, base, extra...)) {
			comp := d.Labels["app.kubernetes.io/component"]
			out[comp] = [2]string{d.Spec.Template.Annotations["checksum/config"], d.Spec.Template.Annotations["checksum/secret"]}
		}
		return out
	}
	before := sums()
	for name, tc := range map[string]struct {
		args    []string
		changed []string
	}{
		"ingest limit":       {[]string{"--set", "ingest.maxEvents=5"}, []string{"ingest"}},
		"worker batch":       {[]string{"--set", "worker.batchSize=7"}, []string{"worker"}},
		"postgres pool":      {[]string{"--set", "postgres.maxConns=3"}, []string{"worker", "query"}},
		"kafka brokers":      {[]string{"--set", "kafka.brokers={k1:9092}"}, []string{"ingest", "worker"}},
		"postgres url":       {[]string{"--set", "postgres.url=postgres://other@db:5432/x"}, []string{"worker", "query"}},
		"shutdown (all)":     {[]string{"--set", "config.shutdownDelaySeconds=3"}, []string{"ingest", "worker", "query"}},
		"redis lease ttl":    {[]string{"--set", "redis.leaseTTL=10s"}, []string{"worker"}},
		"rate limit":         {[]string{"--set", "config.rateLimit=5"}, []string{"ingest"}},
		"statement timeout":  {[]string{"--set", "postgres.statementTimeout=3s"}, []string{"worker", "query"}},
		"kafka sasl user":    {[]string{"--set", "kafka.sasl.username=u"}, []string{"ingest", "worker"}},
		"redis url":          {[]string{"--set", "redis.url=redis://other:6379/1"}, []string{"worker"}},
		"kafka create topic": {[]string{"--set", "kafka.createTopics=true"}, []string{"ingest", "worker"}},
	} {
		t.Run(name, func(t *testing.T) {
			after := sums(tc.args...)
			for _, comp := range components {
				changed := after[comp.name] != before[comp.name]
				if changed != slices.Contains(tc.changed, comp.name) {
					t.Errorf("%v: %s checksums changed=%v, want only %v to roll", tc.args, comp.name, changed, tc.changed)
				}
			}
		})
	}
}
