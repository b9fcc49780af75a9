// Package deploy checks the deployment artifacts (Dockerfiles, docker-compose.yml, the Helm
// chart, the k8s/ manifests and skaffold.yaml) without a cluster or a container engine: each
// is rendered or loaded by the real tool or library and held to pkg/config, the one source
// of the environment variable names and ports the binaries read.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository's top directory (this package lives in test/deploy).
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}()

func repoPath(parts ...string) string {
	return filepath.Join(append([]string{repoRoot}, parts...)...)
}

// component is one binary of the distributed mode as the deployment artifacts see it.
type component struct {
	name string
	cfg  any    // its pkg/config struct
	addr string // its default listen address
}

var components = []component{
	{"ingest", &config.Ingest{}, config.IngestAddr},
	{"worker", &config.Worker{}, config.WorkerAddr},
	{"query", &config.Query{}, config.QueryAddr},
}

// port returns the port of a ":8080"-style listen address.
func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	var n int32
	if _, err := fmt.Sscanf(p, "%d", &n); err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return n
}

// envNames is the set of variables a configuration struct reads, and which of them are secret.
func envNames(cfg any) (names, secret map[string]bool) {
	names, secret = map[string]bool{}, map[string]bool{}
	for _, s := range config.Settings(cfg) {
		names[s.Env] = true
		if s.Secret {
			secret[s.Env] = true
		}
	}
	return names, secret
}

// extraEnv reports whether a variable may be set beside the configuration's own: the
// standard OpenTelemetry and Go runtime variables, and the pod name they refer to.
func extraEnv(name string) bool {
	return strings.HasPrefix(name, "OTEL_") || name == "GOMEMLIMIT" || name == "K8S_POD_NAME"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// diff describes how two name sets differ, or returns "" when they are equal.
func diff(got, want map[string]bool) string {
	var missing, unknown []string
	for n := range want {
		if !got[n] {
			missing = append(missing, n)
		}
	}
	for n := range got {
		if !want[n] {
			unknown = append(unknown, n)
		}
	}
	if len(missing) == 0 && len(unknown) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	return fmt.Sprintf("missing %v, not read by the binary %v", missing, unknown)
}

// run executes a command with a deadline and returns its standard output.
func run(t *testing.T, timeout time.Duration, dir string, name string, args ...string) ([]byte, error) {
	t.Helper()
	return runEnv(t, timeout, dir, nil, name, args...)
}

// runEnv is run with variables added to the environment.
func runEnv(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s %s: timed out after %s", name, strings.Join(args, " "), timeout)
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

var (
	helmOnce sync.Once
	helmBin  string
	helmErr  error
)

// helm returns the pinned Helm binary, built once by scripts/tools.sh (cached across runs).
// There is no fallback: without Helm the chart is unchecked, so the test fails.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		// A cold build of Helm takes a minute or two on two cores.
		out, err := run(t, 8*time.Minute, repoRoot, "bash", repoPath("scripts", "tools.sh"), "helm")
		if err != nil {
			helmErr = fmt.Errorf("build helm with scripts/tools.sh: %w", err)
			return
		}
		helmBin = strings.TrimSpace(string(out))
		if _, err := os.Stat(helmBin); err != nil {
			helmErr = fmt.Errorf("scripts/tools.sh helm printed %q: %w", helmBin, err)
		}
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmBin
}

// object is one decoded Kubernetes object.
type object struct {
	apiVersion, kind, name, namespace string
	source                            string // the template or file it came from
	obj                               any    // a pointer to its typed form
	meta                              *metav1.ObjectMeta
}

func (o object) String() string { return fmt.Sprintf("%s %s (%s)", o.kind, o.name, o.source) }

// ScaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject the chart uses, with the
// field names of KEDA's API: decoding strictly into it rejects misspelt or misplaced fields.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ScaledObjectSpec `json:"spec"`
}

type ScaledObjectSpec struct {
	ScaleTargetRef        *ScaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *AdvancedConfig `json:"advanced,omitempty"`
	Triggers              []ScaleTriggers `json:"triggers"`
	Fallback              *Fallback       `json:"fallback,omitempty"`
}

type ScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type AdvancedConfig struct {
	HorizontalPodAutoscalerConfig *HorizontalPodAutoscalerConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool                           `json:"restoreToOriginalReplicaCount,omitempty"`
}

type HorizontalPodAutoscalerConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type ScaleTriggers struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *AuthenticationTargetRef       `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type AuthenticationTargetRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

type Fallback struct {
	FailureThreshold int32 `json:"failureThreshold"`
	Replicas         int32 `json:"replicas"`
}

// goTypes maps apiVersion/kind to the Go type an object must decode into.
var goTypes = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                            func() any { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
	"v1/Pod":                        func() any { return &corev1.Pod{} },
	"keda.sh/v1alpha1/ScaledObject": func() any { return &ScaledObject{} },
}

// decodeAll splits a multi-document YAML stream and decodes every object strictly into its
// Go type: an unknown or duplicate field, an unknown kind or a wrong value type fails.
func decodeAll(t *testing.T, stream []byte, origin string) []object {
	t.Helper()
	var objs []object
	reader := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: split documents: %v", origin, err)
		}
		source := origin
		if m := bytes.Index(doc, []byte("# Source: ")); m >= 0 {
			line := doc[m+len("# Source: "):]
			if end := bytes.IndexByte(line, '\n'); end >= 0 {
				line = line[:end]
			}
			source = string(line)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Errorf("%s: %v", source, err)
			continue
		}
		if head.APIVersion == "" && head.Kind == "" {
			continue // only comments
		}
		newObj, ok := goTypes[head.APIVersion+"/"+head.Kind]
		if !ok {
			t.Errorf("%s: %s %s: no Go type to check it against", source, head.APIVersion, head.Kind)
			continue
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: %s does not decode strictly: %v", source, head.Kind, err)
			continue
		}
		meta := objectMeta(obj)
		o := object{head.APIVersion, head.Kind, meta.Name, meta.Namespace, source, obj, meta}
		if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
			t.Errorf("%s: name %q: %v", o, o.name, errs)
		}
		if o.kind == "Service" {
			if errs := validation.IsDNS1035Label(o.name); len(errs) > 0 {
				t.Errorf("%s: Service name %q: %v", o, o.name, errs)
			}
		}
		for k, v := range meta.Labels {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Errorf("%s: label key %q: %v", o, k, errs)
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s: label %s=%q: %v", o, k, v, errs)
			}
		}
		objs = append(objs, o)
	}
	return objs
}

func objectMeta(obj any) *metav1.ObjectMeta {
	if o, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return m
		}
	}
	panic(fmt.Sprintf("%T has no ObjectMeta", obj))
}

// find returns the objects of one kind.
func find[T any](objs []object) []*T {
	var out []*T
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// byName returns the object of a kind with a name, or nil.
func byName[T any](objs []object, name string) *T {
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok && o.name == name {
			return v
		}
	}
	return nil
}

// selects reports whether a label selector selects a set of labels.
func selects(selector map[string]string, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkPodTemplate checks what every workload of the repository's manifests must hold: the
// selector selects the template, every container names its ports, images are pinned, and
// env var names are valid and unique.
func checkPodTemplate(t *testing.T, owner string, selector *metav1.LabelSelector, tpl *corev1.PodTemplateSpec) {
	t.Helper()
	if selector != nil && !selects(selector.MatchLabels, tpl.Labels) {
		t.Errorf("%s: selector %v does not select its pod template labels %v", owner, selector.MatchLabels, tpl.Labels)
	}
	for _, c := range slices.Concat(tpl.Spec.InitContainers, tpl.Spec.Containers) {
		if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
			t.Errorf("%s: container %s: image %q is not pinned to a tag or digest", owner, c.Name, c.Image)
		}
		seen := map[string]bool{}
		for _, e := range c.Env {
			if errs := validation.IsEnvVarName(e.Name); len(errs) > 0 {
				t.Errorf("%s: container %s: env %q: %v", owner, c.Name, e.Name, errs)
			}
			if seen[e.Name] {
				t.Errorf("%s: container %s: env %s set twice", owner, c.Name, e.Name)
			}
			seen[e.Name] = true
		}
		for _, p := range c.Ports {
			if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
				t.Errorf("%s: container %s: port name %q: %v", owner, c.Name, p.Name, errs)
			}
		}
	}
}

// containerPort resolves a Service targetPort against the containers of a pod template.
func containerPort(tpl *corev1.PodTemplateSpec, target string) (int32, bool) {
	for _, c := range tpl.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == target || fmt.Sprint(p.ContainerPort) == target {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

// checkServices checks that every Service selects a workload and that its target ports
// exist on that workload's containers.
func checkServices(t *testing.T, objs []object) {
	t.Helper()
	var templates []*corev1.PodTemplateSpec
	for _, d := range find[appsv1.Deployment](objs) {
		templates = append(templates, &d.Spec.Template)
	}
	for _, s := range find[appsv1.StatefulSet](objs) {
		templates = append(templates, &s.Spec.Template)
	}
	for _, svc := range find[corev1.Service](objs) {
		var matched []*corev1.PodTemplateSpec
		for _, tpl := range templates {
			if selects(svc.Spec.Selector, tpl.Labels) {
				matched = append(matched, tpl)
			}
		}
		if len(matched) != 1 {
			t.Errorf("Service %s: selector %v selects %d workloads, want 1", svc.Name, svc.Spec.Selector, len(matched))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := containerPort(matched[0], p.TargetPort.String()); !ok {
				t.Errorf("Service %s: port %s targets %q, which no container declares", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
}

// servicePort returns the port of a Service in objs by name and port number.
func hasServicePort(objs []object, name string, port int32) bool {
	svc := byName[corev1.Service](objs, name)
	if svc == nil {
		return false
	}
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}
