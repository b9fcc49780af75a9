package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir) // the binaries built for this run
	}
	os.Exit(code)
}

// binaries builds the five binaries once per test run; they stand in for the images (each
// image's entrypoint is its binary, see services/*/Dockerfile).
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "deploy-bin-")
		if binErr != nil {
			return
		}
		// The product's modules build in the workspace; this module runs with GOWORK=off.
		_, binErr = runEnv(t, 8*time.Minute, repoRoot, []string{"GOWORK=" + repoPath("go.work"), "GOFLAGS="},
			"go", "build", "-o", binDir+string(filepath.Separator),
			"./services/ingest", "./services/worker", "./services/query", "./services/publisher", "./services/aggregator")
	})
	if binErr != nil {
		t.Fatalf("build the binaries: %v", binErr)
	}
	return binDir
}

// freePort returns a TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is one started binary; its output goes to a file shown when the test fails.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error
}

func startProc(t *testing.T, name, bin string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		// As the kubelet stops a container: SIGTERM, then SIGKILL after the grace period.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(40 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("%s did not stop within 40s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, tailFile(p.log, 40))
		}
	})
	return p
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// baseProcessEnv is the test's environment without the variables that configure the
// binaries: only what the chart renders may reach them.
func baseProcessEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AGGREGATOR_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "PUBLISHER_") || strings.HasPrefix(kv, "GOMEMLIMIT=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// rendered is a chart rendering as the kubelet would see it.
type rendered struct {
	objs       []object
	configMaps map[string]map[string]string
	secrets    map[string]map[string]string
}

func newRendered(objs []object) *rendered {
	r := &rendered{objs: objs, configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{}}
	for _, cm := range find[corev1.ConfigMap](objs) {
		r.configMaps[cm.Name] = cm.Data
	}
	for _, s := range find[corev1.Secret](objs) {
		data := map[string]string{}
		for k, v := range s.Data {
			data[k] = string(v)
		}
		for k, v := range s.StringData {
			data[k] = v
		}
		r.secrets[s.Name] = data
	}
	return r
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// env resolves a container's environment the way the kubelet does: values, ConfigMap and
// Secret keys (a missing optional key leaves the variable unset), the pod name, and
// $(VAR) references to variables defined before.
func (r *rendered) env(t *testing.T, owner, podName string, ctr corev1.Container) map[string]string {
	t.Helper()
	if len(ctr.EnvFrom) > 0 {
		t.Fatalf("%s: envFrom is not resolved by this test", owner)
	}
	out := map[string]string{}
	for _, e := range ctr.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
			v = envRef.ReplaceAllStringFunc(v, func(ref string) string {
				if val, ok := out[ref[2:len(ref)-1]]; ok {
					return val
				}
				return ref
			})
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			val, ok := r.configMaps[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("%s: env %s: ConfigMap %s has no key %s", owner, e.Name, ref.Name, ref.Key)
			}
			v = val
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			val, ok := r.secrets[ref.Name][ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				t.Fatalf("%s: env %s: Secret %s has no key %s", owner, e.Name, ref.Name, ref.Key)
			}
			v = val
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = podName
		default:
			t.Fatalf("%s: env %s: source %+v is not resolved by this test", owner, e.Name, e.ValueFrom)
		}
		out[e.Name] = v
	}
	return out
}

// hostRewriter maps the cluster addresses of the rendering (Service DNS names and ports) to
// where the same things listen on this machine. It is the only change made to the
// rendered environment and arguments: in a pod, kube-dns resolves "kafka" or
// "<release>-ingest"; here the dependencies are scripts/deps.sh's servers on their own
// addresses and the components are processes on free ports.
type hostRewriter struct{ pairs []string }

func (h *hostRewriter) add(from, to string) { h.pairs = append(h.pairs, from, to) }

func (h *hostRewriter) rewrite(s string) string {
	return strings.NewReplacer(h.pairs...).Replace(s)
}

func envList(base []string, env map[string]string, h *hostRewriter) []string {
	out := slices.Clone(base)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+h.rewrite(env[k]))
	}
	return out
}

// binaryOf maps a rendered image to the binary that stands in for it: the last path
// element of its repository (event-aggregator/worker -> worker).
func binaryOf(t *testing.T, image string) string {
	t.Helper()
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	} else if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	name := path.Base(repo)
	bin := filepath.Join(binaries(t), name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("image %s: no binary %s", image, name)
	}
	return bin
}

// probePort resolves a probe's port (named or numeric) against the container's ports.
func probePort(t *testing.T, owner string, ctr corev1.Container, p *corev1.Probe) int32 {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("%s: probe %+v is not an HTTP GET", owner, p)
	}
	for _, cp := range ctr.Ports {
		if cp.Name == p.HTTPGet.Port.String() || fmt.Sprint(cp.ContainerPort) == p.HTTPGet.Port.String() {
			return cp.ContainerPort
		}
	}
	t.Fatalf("%s: probe port %s is not a container port", owner, p.HTTPGet.Port.String())
	return 0
}

// waitProbe polls a probe's path until it answers 2xx (the kubelet's success), the process
// exits, or the probe's own budget (period × failureThreshold, at least the given floor)
// runs out.
func waitProbe(t *testing.T, owner string, p *proc, port int32, probe *corev1.Probe, floor time.Duration) {
	t.Helper()
	budget := time.Duration(probe.PeriodSeconds*probe.FailureThreshold+probe.InitialDelaySeconds) * time.Second
	budget = max(budget, floor)
	u := fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.HTTPGet.Path)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(budget)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before GET %s answered; log:\n%s", owner, p.err, probe.HTTPGet.Path, tailFile(p.log, 30))
		default:
		}
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.exited:
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s: GET %s did not succeed within %s (last: %s); log:\n%s", owner, u, budget, last, tailFile(p.log, 30))
}

// TestChartToProcess renders the chart, then runs what the kubelet would run: the
// migration hook Job's container, each Deployment's container and the helm test Pod, each
// with exactly its rendered command, arguments and environment (ConfigMap and Secret
// references resolved), the built binaries standing in for the images, against the
// dependencies of scripts/deps.sh. Only cluster addresses are rewritten (see hostRewriter);
// the components' ports are free ports set through the chart's own <component>.port values,
// since other processes on this machine may hold 8080-8082.
// Each component must pass its rendered startup, liveness and readiness probes; the helm
// test must pass; and every metric the chart's alerts and dashboard query must be exported
// by the running binaries.
func TestChartToProcess(t *testing.T) {
	queries := append(alertQueries(t), dashboardQueries(t)...)
	used := queriedMetrics(t, queries)

	pgURL, err := url.Parse(testdeps.NewPostgresDB(t))
	if err != nil {
		t.Fatal(err)
	}
	redisURL, err := url.Parse(testdeps.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	brokers := testdeps.KafkaBrokers(t)
	// Topics of this run only; they exist before the pods start, as with the chart's
	// default kafka.createTopics=false.
	topic := testdeps.NewKafkaTopic(t, 3)
	dlq := testdeps.NewKafkaTopic(t, 1)
	binaries(t)

	// The cluster's view: Services named as in k8s/overlays/dev, the URLs' credentials and
	// database are the test's own.
	clusterPG := *pgURL
	clusterPG.Host = "postgres:5432"
	clusterRedis := *redisURL
	clusterRedis.Host = "redis:6379"
	ports := map[string]int{"ingest": freePort(t), "worker": freePort(t), "query": freePort(t)}
	values := map[string]any{
		"kafka": map[string]any{"brokers": []string{"kafka:9092"}, "topic": topic, "dlqTopic": dlq, "partitions": 3,
			"consumerGroup": "group-" + topic},
		"postgres": map[string]any{"url": clusterPG.String()},
		"redis":    map[string]any{"url": clusterRedis.String()},
		"worker":   map[string]any{"port": ports["worker"], "autoscaling": map[string]any{"minReplicas": 1, "maxReplicas": 3}},
		"ingest":   map[string]any{"port": ports["ingest"]},
		"query":    map[string]any{"port": ports["query"]},
		"tests":    map[string]any{"events": 30, "settleTimeoutSeconds": 90},
	}
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	data, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(valuesFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRendered(render(t, chartCase{name: "process"}, "-f", valuesFile))
	fullname := release + "-event-aggregator"

	h := &hostRewriter{}
	h.add("kafka:9092", strings.Join(brokers, ","))
	h.add("postgres:5432", pgURL.Host)
	h.add("redis:6379", redisURL.Host)
	for comp, p := range ports {
		svc := byName[corev1.Service](r.objs, fullname+"-"+comp)
		if svc == nil || len(svc.Spec.Ports) != 1 {
			t.Fatalf("Service %s-%s: %+v", fullname, comp, svc)
		}
		h.add(fmt.Sprintf("%s:%d", svc.Name, svc.Spec.Ports[0].Port), fmt.Sprintf("127.0.0.1:%d", p))
	}
	base := baseProcessEnv()

	// 1. The pre-install hook: the migration Job's container runs to completion.
	jobs := find[batchv1.Job](r.objs)
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs rendered, want the migration hook", len(jobs))
	}
	job := jobs[0]
	jc := job.Spec.Template.Spec.Containers[0]
	jenv := r.env(t, "Job "+job.Name, job.Name+"-x7k2p", jc)
	mig := startProc(t, "migrate", binaryOf(t, jc.Image), append(slices.Clone(jc.Command), jc.Args...), envList(base, jenv, h))
	select {
	case <-mig.exited:
		if mig.err != nil {
			t.Fatalf("migration Job container failed: %v\n%s", mig.err, tailFile(mig.log, 30))
		}
	case <-time.After(time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second):
		t.Fatalf("migration Job container still running after activeDeadlineSeconds")
	}

	// 2. The Deployments: each container started as rendered, then held to its probes.
	type started struct {
		ctr  corev1.Container
		proc *proc
	}
	running := map[string]started{}
	for _, comp := range components {
		d := byName[appsv1.Deployment](r.objs, fullname+"-"+comp.name)
		if d == nil {
			t.Fatalf("no Deployment for %s", comp.name)
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		owner := "Deployment " + d.Name
		env := r.env(t, owner, d.Name+"-5d8f9c-x7k2p", ctr)
		p := startProc(t, comp.name, binaryOf(t, ctr.Image), append(slices.Clone(ctr.Command), ctr.Args...), envList(base, env, h))
		running[comp.name] = started{ctr, p}
	}
	for _, comp := range components {
		s := running[comp.name]
		owner := comp.name + " container"
		// Startup first (the kubelet holds the others until it passes), within its budget.
		waitProbe(t, owner+" startup probe", s.proc, probePort(t, owner, s.ctr, s.ctr.StartupProbe), s.ctr.StartupProbe, 0)
		waitProbe(t, owner+" liveness probe", s.proc, probePort(t, owner, s.ctr, s.ctr.LivenessProbe), s.ctr.LivenessProbe, 0)
		// Readiness waits on the dependencies; the startup budget bounds it here.
		waitProbe(t, owner+" readiness probe", s.proc, probePort(t, owner, s.ctr, s.ctr.ReadinessProbe), s.ctr.ReadinessProbe, time.Minute)
	}

	// 3. helm test: the test Pod's publisher, with its rendered arguments and environment.
	var testPod *corev1.Pod
	for _, p := range find[corev1.Pod](r.objs) {
		if p.Annotations["helm.sh/hook"] == "test" {
			testPod = p
		}
	}
	if testPod == nil {
		t.Fatal("no helm test Pod rendered")
	}
	tc := testPod.Spec.Containers[0]
	tenv := r.env(t, "Pod "+testPod.Name, testPod.Name, tc)
	var args []string
	for _, a := range append(slices.Clone(tc.Command), tc.Args...) {
		args = append(args, h.rewrite(a))
	}
	out, err := runClean(t, 3*time.Minute, envList(base, tenv, h), binaryOf(t, tc.Image), args...)
	if err != nil {
		t.Fatalf("helm test Pod's publisher %v failed: %v", args, err)
	}
	checkPublisherReport(t, out)

	// 4. Every metric the alerts and the dashboard query is exported by some binary.
	checkMetricsExported(t, used, func() []string {
		var targets []string
		for _, comp := range components {
			targets = append(targets, fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[comp.name]))
		}
		return targets
	}())
}

// checkMetricsExported scrapes the targets until every used metric is exported by one of
// them (some series appear only once work happened, e.g. a partition's lag), or fails
// naming the missing ones and where they are used.
func checkMetricsExported(t *testing.T, used map[string][]string, targets []string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	var missing []string
	for {
		exported := map[string]bool{}
		for _, target := range targets {
			resp, err := client.Get(target)
			if err != nil {
				t.Fatalf("scrape %s: %v", target, err)
			}
			names, err := exportedMetrics(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("parse %s: %v", target, err)
			}
			for n := range names {
				exported[n] = true
			}
		}
		missing = missing[:0]
		for name := range used {
			if !exported[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // polling the scrape targets, not synchronising on time
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("metric %s, used by %v, is exported by none of %v", m, used[m], targets)
	}
}

// checkPublisherReport checks the publisher's JSON summary: its own verification passed
// (every acknowledged event stored exactly once) and /stats kept its invariant over the
// run, received = unique + duplicates.
func checkPublisherReport(t *testing.T, out []byte) {
	t.Helper()
	var rep struct {
		Verification *struct {
			Status                string `json:"status"`
			Message               string `json:"message"`
			UniqueDelta           int64  `json:"unique_delta"`
			ReceivedDelta         int64  `json:"received_delta"`
			DuplicateDroppedDelta int64  `json:"duplicate_dropped_delta"`
		} `json:"verification"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || rep.Verification == nil {
		t.Fatalf("publisher summary %q: %v", out, err)
	}
	v := rep.Verification
	if v.Status != "ok" {
		t.Errorf("publisher verification %s: %s", v.Status, v.Message)
	}
	if v.UniqueDelta <= 0 || v.ReceivedDelta != v.UniqueDelta+v.DuplicateDroppedDelta {
		t.Errorf("/stats over the run: received +%d, unique +%d, duplicates +%d: want received = unique + duplicates, unique > 0",
			v.ReceivedDelta, v.UniqueDelta, v.DuplicateDroppedDelta)
	}
}

// runClean runs a command with exactly the given environment and returns its output.
func runClean(t *testing.T, timeout time.Duration, env []string, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// TestHelmTestAgainstAllInOne runs the helm test Pod's publisher command against the
// all-in-one binary, exactly as rendered but for the ingest and query addresses (both the
// all-in-one's): the arguments must be a real command line of the publisher, and its
// verification must pass.
func TestHelmTestAgainstAllInOne(t *testing.T) {
	dir := binaries(t)
	port := freePort(t)
	env := append(baseProcessEnv(), fmt.Sprintf("AGGREGATOR_ADDR=127.0.0.1:%d", port), "AGGREGATOR_DATA_DIR="+t.TempDir())
	p := startProc(t, "aggregator", filepath.Join(dir, "aggregator"), nil, env)
	ready := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz"}}}
	waitProbe(t, "all-in-one readiness", p, int32(port), ready, 30*time.Second)

	r := newRendered(render(t, chartCase{name: "default", file: filepath.Join(chartDir, "ci", "default-values.yaml")}))
	var testPod *corev1.Pod
	for _, pod := range find[corev1.Pod](r.objs) {
		if pod.Annotations["helm.sh/hook"] == "test" {
			testPod = pod
		}
	}
	if testPod == nil {
		t.Fatal("no helm test Pod rendered")
	}
	ctr := testPod.Spec.Containers[0]
	h := &hostRewriter{}
	for _, comp := range []string{"ingest", "query"} {
		svc := byName[corev1.Service](r.objs, release+"-event-aggregator-"+comp)
		h.add(fmt.Sprintf("%s:%d", svc.Name, svc.Spec.Ports[0].Port), fmt.Sprintf("127.0.0.1:%d", port))
	}
	var args []string
	for _, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
		args = append(args, h.rewrite(a))
	}
	env = envList(baseProcessEnv(), r.env(t, "Pod "+testPod.Name, testPod.Name, ctr), h)
	out, err := runClean(t, 3*time.Minute, env, binaryOf(t, ctr.Image), args...)
	if err != nil {
		t.Fatalf("publisher %v: %v", args, err)
	}
	checkPublisherReport(t, out)
}
