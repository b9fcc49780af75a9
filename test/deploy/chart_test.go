package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "charts/event-aggregator"
	release  = "ea"
	ns       = "event-aggregator-test"
	// The Kubernetes version the chart is rendered and linted for; Chart.yaml's kubeVersion
	// is the oldest it supports.
	kubeVersion = "v1.34.0"
)

// chartCase is one set of values the chart is checked with: a ci/ file over the defaults
// (the defaults alone do not render: they carry no Postgres or Redis URL, see
// TestHelmDefaultsCarryNoCredential).
type chartCase struct {
	name   string
	file   string         // values file relative to the repository, "" for the defaults
	values map[string]any // values.yaml merged with file, as Helm merges them
}

func chartCases(t *testing.T) []chartCase {
	t.Helper()
	var cases []chartCase
	files, err := filepath.Glob(repoPath(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("%s/ci has %d *-values.yaml files, want at least 3", chartDir, len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(repoRoot, f)
		cases = append(cases, chartCase{
			name:   strings.TrimSuffix(filepath.Base(f), "-values.yaml"),
			file:   rel,
			values: merge(readYAML(t, repoPath(chartDir, "values.yaml")), readYAML(t, f)),
		})
	}
	return cases
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// merge overlays src onto dst the way Helm coalesces values files (maps merge, the rest
// replaces).
func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// value looks up a dotted path in values.
func value(values map[string]any, path string) any {
	var cur any = values
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func boolValue(values map[string]any, path string) bool {
	b, _ := value(values, path).(bool)
	return b
}

func stringValue(values map[string]any, path string) string {
	s, _ := value(values, path).(string)
	return s
}

func helmArgs(c chartCase, args ...string) []string {
	args = append(args, "--kube-version", kubeVersion)
	if c.file != "" {
		args = append(args, "-f", c.file)
	}
	return args
}

func render(t *testing.T, c chartCase, extra ...string) []object {
	t.Helper()
	args := helmArgs(c, append([]string{"template", release, chartDir, "--namespace", ns}, extra...)...)
	out, err := run(t, time.Minute, repoRoot, helm(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, out, "helm template "+c.name)
}

func TestHelmLint(t *testing.T) {
	for _, c := range chartCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if _, err := run(t, time.Minute, repoRoot, helm(t), helmArgs(c, "lint", "--strict", chartDir)...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHelmTemplate(t *testing.T) {
	for _, c := range chartCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			objs := render(t, c)
			checkChart(t, c, objs)
		})
	}
}

// checkChart holds one rendering of the chart to the binaries' contract.
func checkChart(t *testing.T, c chartCase, objs []object) {
	fullname := release + "-event-aggregator"
	if f := stringValue(c.values, "fullnameOverride"); f != "" {
		fullname = f
	}
	existingSecret := stringValue(c.values, "secret.existingSecret")
	migration := boolValue(c.values, "migration.enabled")

	for _, o := range objs {
		if o.namespace != ns {
			t.Errorf("%s: namespace %q, want the release namespace %q", o, o.namespace, ns)
		}
	}
	checkServices(t, objs)

	// Every configMapKeyRef and secretKeyRef must resolve: to a rendered object, or to the
	// existing Secret the values name.
	configMaps := map[string]map[string]string{}
	for _, cm := range find[corev1.ConfigMap](objs) {
		configMaps[cm.Name] = cm.Data
	}
	secrets := map[string]*corev1.Secret{}
	for _, s := range find[corev1.Secret](objs) {
		secrets[s.Name] = s
	}
	if existingSecret != "" {
		for name, s := range secrets {
			if !isHook(&s.ObjectMeta) {
				t.Errorf("Secret %s rendered although secret.existingSecret is set", name)
			}
		}
	}
	checkEnvSources := func(owner string, env []corev1.EnvVar, hook bool) {
		for _, e := range env {
			if e.ValueFrom == nil {
				continue
			}
			if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
				data, ok := configMaps[ref.Name]
				if !ok {
					t.Errorf("%s: env %s: ConfigMap %s is not rendered", owner, e.Name, ref.Name)
				} else if _, ok := data[ref.Key]; !ok {
					t.Errorf("%s: env %s: ConfigMap %s has no key %s", owner, e.Name, ref.Name, ref.Key)
				}
			}
			if ref := e.ValueFrom.SecretKeyRef; ref != nil {
				if ref.Name == existingSecret {
					continue
				}
				s, ok := secrets[ref.Name]
				switch {
				case !ok:
					t.Errorf("%s: env %s: Secret %s is neither rendered nor secret.existingSecret", owner, e.Name, ref.Name)
				case isHook(&s.ObjectMeta) != hook:
					t.Errorf("%s: env %s: Secret %s is a hook: %v, its reader: %v", owner, e.Name, ref.Name, isHook(&s.ObjectMeta), hook)
				default:
					if _, ok := s.Data[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
						t.Errorf("%s: env %s: Secret %s has no key %s", owner, e.Name, ref.Name, ref.Key)
					}
				}
			}
		}
	}

	deployments := map[string]*appsv1.Deployment{}
	for _, comp := range components {
		name := fullname + "-" + comp.name
		d := byName[appsv1.Deployment](objs, name)
		if d == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		deployments[comp.name] = d
		owner := "Deployment " + name
		checkPodTemplate(t, owner, d.Spec.Selector, &d.Spec.Template)
		checkRestricted(t, owner, &d.Spec.Template.Spec)
		if d.Spec.Template.Annotations["checksum/config"] == "" {
			t.Errorf("%s: no checksum/config annotation on the pod template", owner)
		}
		if existingSecret == "" && d.Spec.Template.Annotations["checksum/secret"] == "" {
			t.Errorf("%s: no checksum/secret annotation on the pod template", owner)
		}
		if len(d.Spec.Template.Spec.Containers) != 1 {
			t.Errorf("%s: %d containers, want 1", owner, len(d.Spec.Template.Spec.Containers))
			continue
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		checkEnvSources(owner, ctr.Env, false)
		checkComponentContainer(t, c, comp, owner, ctr, migration)
		checkExtensions(t, c, comp.name, owner, &d.Spec.Template.Spec, &ctr)
		checkFileSettings(t, owner, &d.Spec.Template.Spec, ctr, configMaps)
		checkPodScheduling(t, c, comp.name, owner, &d.Spec.Template)
	}

	// The worker is scaled by exactly one of: KEDA, the HPA, a fixed replica count.
	worker := deployments["worker"]
	keda := boolValue(c.values, "worker.keda.enabled")
	hpaOn := boolValue(c.values, "worker.autoscaling.enabled") && !keda
	hpas := find[autoscalingv2.HorizontalPodAutoscaler](objs)
	scaled := find[ScaledObject](objs)
	switch {
	case keda && (len(scaled) != 1 || len(hpas) != 0):
		t.Errorf("keda: %d ScaledObjects and %d HPAs, want 1 and 0", len(scaled), len(hpas))
	case hpaOn && (len(hpas) != 1 || len(scaled) != 0):
		t.Errorf("autoscaling: %d HPAs and %d ScaledObjects, want 1 and 0", len(hpas), len(scaled))
	case !keda && !hpaOn && len(hpas)+len(scaled) != 0:
		t.Errorf("no autoscaling configured, yet %d HPAs and %d ScaledObjects", len(hpas), len(scaled))
	}
	if worker != nil {
		if (keda || hpaOn) != (worker.Spec.Replicas == nil) {
			t.Errorf("worker Deployment replicas %v with autoscaling %v: an autoscaled Deployment must not set replicas", worker.Spec.Replicas, keda || hpaOn)
		}
		for _, h := range hpas {
			checkHPA(t, c, h, worker)
		}
		for _, s := range scaled {
			checkScaledObject(t, c, s, worker)
		}
	}

	for _, pdb := range find[policyv1.PodDisruptionBudget](objs) {
		if n := matchingDeployments(deployments, pdb.Spec.Selector.MatchLabels); n != 1 {
			t.Errorf("PodDisruptionBudget %s selects %d Deployments, want 1", pdb.Name, n)
		}
		// Without it a drain waits forever on pods that are unready because a dependency is down.
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("PodDisruptionBudget %s: unhealthyPodEvictionPolicy %v, want AlwaysAllow", pdb.Name, p)
		}
		if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.String() == "0" || mu.String() == "0%" {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %v blocks every eviction", pdb.Name, mu)
		}
	}
	checkNetworkPolicies(t, c, objs, fullname)
	checkTestPod(t, c, objs, fullname, checkEnvSources)
	checkMonitoring(t, c, objs)
	for _, np := range find[networkingv1.NetworkPolicy](objs) {
		if n := matchingDeployments(deployments, np.Spec.PodSelector.MatchLabels); n != 1 {
			t.Errorf("NetworkPolicy %s selects %d Deployments, want 1", np.Name, n)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port == nil || p.Port.String() != "http" {
					t.Errorf("NetworkPolicy %s admits port %v, want the named port http", np.Name, p.Port)
				}
			}
		}
	}
	if want := boolValue(c.values, "networkPolicy.enabled"); want != (len(find[networkingv1.NetworkPolicy](objs)) == len(components)) {
		t.Errorf("networkPolicy.enabled=%v, yet %d NetworkPolicies", want, len(find[networkingv1.NetworkPolicy](objs)))
	}

	for _, ing := range find[networkingv1.Ingress](objs) {
		routes := map[string]string{}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				t.Errorf("Ingress %s: a rule without http paths", ing.Name)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				svc := p.Backend.Service
				if svc == nil || !hasNamedPort(objs, svc.Name, svc.Port.Name) {
					t.Errorf("Ingress %s: path %s goes to %+v, not a rendered Service port", ing.Name, p.Path, svc)
					continue
				}
				routes[p.Path] = svc.Name
			}
		}
		if routes["/publish"] != fullname+"-ingest" || routes["/"] != fullname+"-query" {
			t.Errorf("Ingress %s routes %v: want /publish to ingest and / to query", ing.Name, routes)
		}
	}
	if want := boolValue(c.values, "ingress.enabled"); want != (len(find[networkingv1.Ingress](objs)) == 1) {
		t.Errorf("ingress.enabled=%v, yet %d Ingresses", want, len(find[networkingv1.Ingress](objs)))
	}

	monitors := find[monitoringv1.ServiceMonitor](objs)
	if want := boolValue(c.values, "serviceMonitor.enabled"); want != (len(monitors) == 1) {
		t.Errorf("serviceMonitor.enabled=%v, yet %d ServiceMonitors", want, len(monitors))
	}
	for _, sm := range monitors {
		var selected []string
		for _, svc := range find[corev1.Service](objs) {
			sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil {
				t.Fatalf("ServiceMonitor %s selector: %v", sm.Name, err)
			}
			if sel.Matches(labels.Set(svc.Labels)) {
				selected = append(selected, svc.Name)
			}
		}
		if len(selected) != len(components) {
			t.Errorf("ServiceMonitor %s selects Services %v, want the %d components'", sm.Name, selected, len(components))
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor %s endpoints %+v, want port http, path /metrics", sm.Name, sm.Spec.Endpoints)
		}
	}

	jobs := find[batchv1.Job](objs)
	if !migration {
		if len(jobs) != 0 {
			t.Errorf("migration.enabled=false, yet %d Jobs", len(jobs))
		}
		return
	}
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want the one migration hook", len(jobs))
	}
	job := jobs[0]
	owner := "Job " + job.Name
	hooks := strings.Split(job.Annotations["helm.sh/hook"], ",")
	if !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("%s: helm.sh/hook %q, want pre-install and pre-upgrade", owner, job.Annotations["helm.sh/hook"])
	}
	if job.Annotations["helm.sh/hook-delete-policy"] == "" {
		t.Errorf("%s: no helm.sh/hook-delete-policy", owner)
	}
	checkPodTemplate(t, owner, nil, &job.Spec.Template)
	checkRestricted(t, owner, &job.Spec.Template.Spec)
	if len(job.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", owner, len(job.Spec.Template.Spec.Containers))
	}
	ctr := job.Spec.Template.Spec.Containers[0]
	checkExtensions(t, c, "migration", owner, &job.Spec.Template.Spec, &ctr)
	checkFileSettings(t, owner, &job.Spec.Template.Spec, ctr, nil)
	if sa := stringValue(c.values, "migration.serviceAccountName"); job.Spec.Template.Spec.ServiceAccountName != sa {
		t.Errorf("%s: serviceAccountName %q, want migration.serviceAccountName %q", owner, job.Spec.Template.Spec.ServiceAccountName, sa)
	}
	for k, v := range mapValue(c.values, "migration.annotations") {
		if job.Annotations[k] != fmt.Sprint(v) {
			t.Errorf("%s: annotation %s=%q, want %v", owner, k, job.Annotations[k], v)
		}
	}
	if len(ctr.Command) != 0 || !slices.Equal(ctr.Args, []string{"migrate"}) {
		t.Errorf("%s: command %q args %q, want the image's entrypoint with args [migrate]", owner, ctr.Command, ctr.Args)
	}
	if worker != nil && ctr.Image != worker.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("%s: image %s, want the worker's %s", owner, ctr.Image, worker.Spec.Template.Spec.Containers[0].Image)
	}
	// Hooks run before the release's objects exist: the Job may read only hook objects or
	// the existing Secret.
	checkEnvSources(owner, ctr.Env, true)
	workerNames, workerSecret := envNames(components[1].cfg)
	set := map[string]bool{}
	added := append(names(listValue(c.values, "extraEnv")), names(listValue(c.values, "migration.extraEnv"))...)
	for _, e := range ctr.Env {
		set[e.Name] = true
		switch {
		case extraEnv(e.Name) || slices.Contains(added, e.Name):
		case !workerNames[e.Name]:
			t.Errorf("%s: env %s is not read by the worker binary", owner, e.Name)
		case workerSecret[e.Name] && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil):
			t.Errorf("%s: env %s is secret and must come from a Secret", owner, e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			t.Errorf("%s: env %s reads the release ConfigMap, which does not exist yet when pre-install hooks run", owner, e.Name)
		}
	}
	if !set["AGGREGATOR_POSTGRES_URL"] {
		t.Errorf("%s: AGGREGATOR_POSTGRES_URL not set", owner)
	}
	jobWeight := job.Annotations["helm.sh/hook-weight"]
	for _, s := range secrets {
		if isHook(&s.ObjectMeta) && !(hookWeight(t, &s.ObjectMeta) < hookWeight(t, &job.ObjectMeta)) {
			t.Errorf("hook Secret %s has weight %s, not below the Job's %s: it must exist before the Job", s.Name, s.Annotations["helm.sh/hook-weight"], jobWeight)
		}
	}
}

// checkComponentContainer holds a component's container to its binary: port, probes,
// subcommand, and exactly the environment its configuration reads.
func checkComponentContainer(t *testing.T, c chartCase, comp component, owner string, ctr corev1.Container, migration bool) {
	t.Helper()
	wantPort := port(t, comp.addr)
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "http" || ctr.Ports[0].ContainerPort != wantPort {
		t.Errorf("%s: ports %+v, want one named http on %d (pkg/config)", owner, ctr.Ports, wantPort)
	}
	if len(ctr.Command) != 0 || !slices.Equal(ctr.Args, []string{"serve"}) {
		t.Errorf("%s: command %q args %q, want the image's entrypoint with args [serve]", owner, ctr.Command, ctr.Args)
	}
	checkProbe(t, owner+" liveness", ctr.LivenessProbe, "/healthz")
	checkProbe(t, owner+" readiness", ctr.ReadinessProbe, "/readyz")
	if ctr.StartupProbe != nil {
		checkProbe(t, owner+" startup", ctr.StartupProbe, "/healthz")
	}

	names, secret := envNames(comp.cfg)
	allowed := map[string]bool{}
	for _, path := range []string{"extraEnv", comp.name + ".extraEnv"} {
		list, _ := value(c.values, path).([]any)
		for _, item := range list {
			if m, ok := item.(map[string]any); ok {
				allowed[fmt.Sprint(m["name"])] = true
			}
		}
	}
	got := map[string]bool{}
	env := map[string]corev1.EnvVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
		if extraEnv(e.Name) || allowed[e.Name] {
			continue
		}
		got[e.Name] = true
		if secret[e.Name] && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s: env %s is secret (pkg/config) and must come from a Secret", owner, e.Name)
		}
		if !secret[e.Name] && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("%s: env %s is not secret, yet comes from a Secret", owner, e.Name)
		}
	}
	if d := diff(got, names); d != "" {
		t.Errorf("%s: env differs from pkg/config's %T: %s", owner, comp.cfg, d)
	}
	if v := env["AGGREGATOR_ADDR"].Value; v != fmt.Sprintf(":%d", wantPort) {
		t.Errorf("%s: AGGREGATOR_ADDR=%q, want :%d", owner, v, wantPort)
	}
	if names["AGGREGATOR_MIGRATE_ON_START"] {
		if want := fmt.Sprint(!migration); env["AGGREGATOR_MIGRATE_ON_START"].Value != want {
			t.Errorf("%s: AGGREGATOR_MIGRATE_ON_START=%q with migration.enabled=%v, want %q", owner, env["AGGREGATOR_MIGRATE_ON_START"].Value, migration, want)
		}
	}
	if v := env["OTEL_SERVICE_NAME"].Value; v != comp.name {
		t.Errorf("%s: OTEL_SERVICE_NAME=%q, want %q", owner, v, comp.name)
	}
	if endpoint := stringValue(c.values, "otel.endpoint"); env["OTEL_EXPORTER_OTLP_ENDPOINT"].Value != endpoint {
		t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT=%q, want otel.endpoint %q", owner, env["OTEL_EXPORTER_OTLP_ENDPOINT"].Value, endpoint)
	}
	checkGoMemLimit(t, c, owner, ctr)
}

func checkProbe(t *testing.T, owner string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: want an HTTP GET of %s", owner, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
		t.Errorf("%s probe: GET %s on port %s, want %s on http", owner, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// checkRestricted checks a pod against the restricted Pod Security Standard, and that it
// runs as the images' non-root user.
func checkRestricted(t *testing.T, owner string, pod *corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: uses host namespaces", owner)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", owner, v.Name)
		}
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile %+v, want RuntimeDefault", owner, psc.SeccompProfile)
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: container %s has no securityContext", owner, c.Name)
			continue
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = psc.RunAsNonRoot
		}
		user := sc.RunAsUser
		if user == nil {
			user = psc.RunAsUser
		}
		switch {
		case nonRoot == nil || !*nonRoot:
			t.Errorf("%s: container %s: runAsNonRoot is not true", owner, c.Name)
		case user == nil || *user != 65532:
			t.Errorf("%s: container %s: runAsUser %v, want 65532 (the images' nonroot)", owner, c.Name, user)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: container %s is privileged", owner, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container %s: allowPrivilegeEscalation is not false", owner, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: container %s: readOnlyRootFilesystem is not true", owner, c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: container %s: capabilities %+v, want drop ALL and add none", owner, c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: container %s: seccompProfile %+v", owner, c.Name, sc.SeccompProfile)
		}
	}
}

func checkScaledObject(t *testing.T, c chartCase, s *ScaledObject, worker *appsv1.Deployment) {
	t.Helper()
	owner := "ScaledObject " + s.Name
	if s.Spec.ScaleTargetRef == nil || s.Spec.ScaleTargetRef.Name != worker.Name {
		t.Errorf("%s: scaleTargetRef %+v, want the worker Deployment %s", owner, s.Spec.ScaleTargetRef, worker.Name)
	}
	if len(s.Spec.Triggers) != 1 || s.Spec.Triggers[0].Type != "kafka" {
		t.Fatalf("%s: triggers %+v, want one of type kafka", owner, s.Spec.Triggers)
	}
	md := s.Spec.Triggers[0].Metadata
	brokers, _ := value(c.values, "kafka.brokers").([]any)
	var want []string
	for _, b := range brokers {
		want = append(want, fmt.Sprint(b))
	}
	if md["bootstrapServers"] != strings.Join(want, ",") || md["consumerGroup"] != stringValue(c.values, "kafka.consumerGroup") ||
		md["topic"] != stringValue(c.values, "kafka.topic") {
		t.Errorf("%s: trigger metadata %v does not match the Kafka values", owner, md)
	}
	if _, err := fmt.Sscanf(md["lagThreshold"], "%d", new(int)); err != nil {
		t.Errorf("%s: lagThreshold %q is not a number", owner, md["lagThreshold"])
	}
	if s.Spec.MaxReplicaCount == nil || s.Spec.MinReplicaCount == nil || *s.Spec.MinReplicaCount > *s.Spec.MaxReplicaCount {
		t.Errorf("%s: replica bounds %v..%v", owner, s.Spec.MinReplicaCount, s.Spec.MaxReplicaCount)
	}
	if s.Spec.MaxReplicaCount != nil && int(*s.Spec.MaxReplicaCount) > intValue(c.values, "kafka.partitions") {
		t.Errorf("%s: maxReplicaCount %d above kafka.partitions %d", owner, *s.Spec.MaxReplicaCount, intValue(c.values, "kafka.partitions"))
	}
	if s.Spec.Advanced == nil || s.Spec.Advanced.HorizontalPodAutoscalerConfig == nil {
		t.Errorf("%s: no HPA behaviour", owner)
	} else {
		checkScaleBehavior(t, c, owner, s.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior)
	}
}

func isHook(m interface{ GetAnnotations() map[string]string }) bool {
	return m.GetAnnotations()["helm.sh/hook"] != ""
}

func hookWeight(t *testing.T, m interface{ GetAnnotations() map[string]string }) int {
	t.Helper()
	w := 0
	if s := m.GetAnnotations()["helm.sh/hook-weight"]; s != "" {
		if _, err := fmt.Sscanf(s, "%d", &w); err != nil {
			t.Errorf("hook weight %q: %v", s, err)
		}
	}
	return w
}

func matchingDeployments(deployments map[string]*appsv1.Deployment, selector map[string]string) int {
	n := 0
	for _, d := range deployments {
		if selects(selector, d.Spec.Template.Labels) {
			n++
		}
	}
	return n
}

func hasNamedPort(objs []object, service, portName string) bool {
	svc := byName[corev1.Service](objs, service)
	if svc == nil {
		return false
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == portName {
			return true
		}
	}
	return false
}

// TestHelmTemplateSecrets checks the chart's own Secret: it carries the URLs from the values,
// and the API keys only when some are set.
func TestHelmTemplateSecrets(t *testing.T) {
	c := chartCase{name: "api-keys"}
	objs := render(t, c, "--set", "config.apiKeys={k1,k2}", "--set", "postgres.url=postgres://u:p@db:5432/x", "--set", "redis.url=redis://r:6379/1")
	s := byName[corev1.Secret](objs, release+"-event-aggregator")
	if s == nil {
		t.Fatal("no Secret rendered")
	}
	want := map[string]string{
		"AGGREGATOR_POSTGRES_URL": "postgres://u:p@db:5432/x",
		"AGGREGATOR_REDIS_URL":    "redis://r:6379/1",
		"AGGREGATOR_API_KEYS":     "k1,k2",
		"AGGREGATOR_TEST_API_KEY": "k1", // the helm test publishes with the first key
	}
	for k, v := range want {
		if got := string(s.Data[k]); got != v {
			t.Errorf("Secret key %s = %q, want %q", k, got, v)
		}
	}
	if len(s.Data) != len(want) {
		t.Errorf("Secret keys %v, want %v", sortedKeys(s.Data), sortedKeys(want))
	}
	// The migration hook has its own copy of the Postgres URL.
	hook := byName[corev1.Secret](objs, release+"-event-aggregator-migrate")
	if hook == nil || string(hook.Data["AGGREGATOR_POSTGRES_URL"]) != want["AGGREGATOR_POSTGRES_URL"] {
		t.Errorf("migration hook Secret does not carry the Postgres URL: %+v", hook)
	}
}

// TestHelmValuesRejected checks that values.schema.json and the templates refuse what would
// otherwise deploy something broken, each with a message that names the problem. Every case
// starts from ci/default-values.yaml, so that only the bad value can fail the render.
func TestHelmValuesRejected(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string // part of the error
	}{
		"misspelt key":                       {[]string{"--set", "ingest.replica=3"}, "replica"},
		"unknown top-level key":              {[]string{"--set", "workers.replicas=3"}, "workers"},
		"bad log level":                      {[]string{"--set", "config.logLevel=verbose"}, "logLevel"},
		"bad duration":                       {[]string{"--set", "redis.leaseTTL=30"}, "leaseTTL"},
		"no brokers":                         {[]string{"--set", "kafka.brokers=null"}, "brokers"},
		"no postgres url":                    {[]string{"--set", "postgres.url="}, "postgres.url is required"},
		"no redis url":                       {[]string{"--set", "redis.url="}, "redis.url is required"},
		"comma in an API key":                {[]string{"--set-json", `config.apiKeys=["a,b"]`}, "apiKeys"},
		"zero partitions":                    {[]string{"--set", "kafka.partitions=0"}, "partitions"},
		"bad otel protocol":                  {[]string{"--set", "otel.protocol=thrift"}, "protocol"},
		"service port out of range":          {[]string{"--set", "query.service.port=70000"}, "port"},
		"payload above a Kafka record":       {[]string{"--set", "ingest.maxPayloadBytes=2000000"}, "maxPayloadBytes"},
		"payload above the body":             {[]string{"--set", "ingest.maxBodyBytes=1000", "--set", "ingest.maxPayloadBytes=2000"}, "maxPayloadBytes"},
		"pull secret as a string":            {[]string{"--set", "image.pullSecrets={regcred}"}, "pullSecrets"},
		"pull secret without a name":         {[]string{"--set-json", `image.pullSecrets=[{"secret":"regcred"}]`}, "pullSecrets"},
		"HPA min above max":                  {[]string{"--set", "worker.autoscaling.minReplicas=6", "--set", "worker.autoscaling.maxReplicas=4"}, "minReplicas (6) is above"},
		"HPA max above partitions":           {[]string{"--set", "worker.autoscaling.maxReplicas=13"}, "above kafka.partitions"},
		"KEDA max above partitions":          {[]string{"--set", "worker.keda.enabled=true", "--set", "worker.keda.maxReplicaCount=20"}, "above kafka.partitions"},
		"KEDA min above max":                 {[]string{"--set", "worker.keda.enabled=true", "--set", "worker.keda.minReplicaCount=5", "--set", "worker.keda.maxReplicaCount=3"}, "minReplicaCount (5) is above"},
		"fixed workers above partitions":     {[]string{"--set", "worker.autoscaling.enabled=false", "--set", "worker.replicas=13"}, "above kafka.partitions"},
		"PDB maxUnavailable 0":               {[]string{"--set", "ingest.podDisruptionBudget.maxUnavailable=0"}, "maxUnavailable"},
		"PDB maxUnavailable 0%":              {[]string{"--set", "query.podDisruptionBudget.maxUnavailable=0%"}, "maxUnavailable"},
		"grace shorter than the drain":       {[]string{"--set", "ingest.terminationGracePeriodSeconds=25"}, "must exceed config.shutdownDelaySeconds"},
		"memory limit the chart can't parse": {[]string{"--set", "worker.resources.limits.memory=1e9"}, "memory"},
		"GOMEMLIMIT above the limit":         {[]string{"--set", "config.goMemLimitPercent=120"}, "goMemLimitPercent"},
		"unknown SASL mechanism":             {[]string{"--set", "kafka.sasl.mechanism=gssapi"}, "mechanism"},
		"two CA bundles":                     {[]string{"--set", "caBundle.secretName=a", "--set", "caBundle.configMapName=b"}, "caBundle"},
		"KEDA without credentials for SASL":  {[]string{"--set", "worker.keda.enabled=true", "--set", "kafka.sasl.mechanism=plain"}, "authenticationRef is required"},
		"unknown HPA metric type":            {[]string{"--set", "worker.autoscaling.metricType=Resource"}, "metricType"},
	}
	names := sortedKeys(cases)
	for _, name := range names {
		tc := cases[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			all := append([]string{"template", release, chartDir, "--namespace", ns, "--kube-version", kubeVersion,
				"-f", filepath.Join(chartDir, "ci", "default-values.yaml")}, tc.args...)
			_, err := run(t, time.Minute, repoRoot, helm(t), all...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error", tc.args)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template %v failed without naming %q:\n%v", tc.args, tc.want, err)
			}
		})
	}
}

// TestChartReadme checks that the chart's README documents every value: each leaf of
// values.yaml (or a parent of it) appears as a key in the values table.
func TestChartReadme(t *testing.T) {
	readme, err := os.ReadFile(repoPath(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	var missing []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if documented[prefix] {
			return
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			missing = append(missing, prefix)
			return
		}
		for k, child := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, child)
		}
	}
	walk("", readYAML(t, repoPath(chartDir, "values.yaml")))
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s/README.md does not document %v", chartDir, missing)
	}
	values := readYAML(t, repoPath(chartDir, "values.yaml"))
	for _, key := range sortedKeys(documented) {
		if _, ok := lookupKey(values, key); !ok {
			t.Errorf("%s/README.md documents %s, which values.yaml does not have", chartDir, key)
		}
	}
}

func lookupKey(values map[string]any, path string) (any, bool) {
	parts := strings.Split(path, ".")
	cur := values
	for i, p := range parts {
		v, ok := cur[p]
		if !ok {
			return nil, false
		}
		if i == len(parts)-1 {
			return v, true
		}
		if cur, ok = v.(map[string]any); !ok {
			return nil, false
		}
	}
	return nil, false
}
