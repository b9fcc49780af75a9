package deploy

// The harness of the tests that run the deployment artifacts against a real Kubernetes
// control plane: etcd, kube-apiserver (RBAC, Pod Security admission, token authentication),
// kube-controller-manager and kube-scheduler, started by scripts/deps/k8s.sh. There is no
// kubelet and no container runtime: objects are admitted, validated, defaulted, reconciled
// by the controllers and their Pods scheduled, but no container ever runs.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
)

// kubeconfigEnv names the kubeconfig of the test cluster (`scripts/deps.sh env` prints it).
const kubeconfigEnv = "AGGREGATOR_TEST_KUBECONFIG"

// fieldManager owns what the tests apply server-side.
const fieldManager = "deploy-test"

// testCluster is the control plane of scripts/deps/k8s.sh as the tests use it.
type testCluster struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	// kubeconfig is for Helm and other subprocesses: it points at a proxy in this process
	// that records every warning the API server sends them.
	kubeconfig string
	warnings   *warningLog
}

// warningLog collects every Warning header the API server returns, to clients of this
// process (client-go's warning handler) and to Helm (through the proxy).
type warningLog struct {
	mu      sync.Mutex
	entries []string
}

func (w *warningLog) add(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.entries = append(w.entries, s)
}

func (w *warningLog) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.entries)
}

func (w *warningLog) since(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.entries[n:])
}

// take removes and returns the entries recorded since the n-th.
func (w *warningLog) take(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Clone(w.entries[n:])
	w.entries = w.entries[:n]
	return out
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warningLog) HandleWarningHeader(code int, agent, text string) {
	if code == 299 && text != "" {
		w.add("client-go: " + text)
	}
}

// failOnWarnings fails t if the API server returns any warning while t runs: a warning is
// a deprecated API, an unknown or duplicate field, or a Pod Security violation.
func (w *warningLog) failOnWarnings(t *testing.T) {
	start := w.len()
	t.Cleanup(func() {
		for _, s := range w.since(start) {
			t.Errorf("API server warning: %s", s)
		}
	})
}

var clusterOnce struct {
	sync.Once
	c   *testCluster
	err error
}

// cluster connects to the test cluster, once per test binary; it fails the test when the
// cluster is not reachable (start it with `scripts/deps.sh up k8s`). Every warning the API
// server returns while the test runs fails it.
func cluster(t *testing.T) *testCluster {
	t.Helper()
	clusterOnce.Do(func() { clusterOnce.c, clusterOnce.err = connect() })
	if clusterOnce.err != nil {
		t.Fatalf("Kubernetes test cluster: %v\nStart it with `scripts/deps.sh up k8s` and export %s (see `scripts/deps.sh env`).",
			clusterOnce.err, kubeconfigEnv)
	}
	clusterOnce.c.warnings.failOnWarnings(t)
	return clusterOnce.c
}

func connect() (*testCluster, error) {
	path := os.Getenv(kubeconfigEnv)
	if path == "" {
		return nil, fmt.Errorf("%s is not set", kubeconfigEnv)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	warnings := &warningLog{}
	cfg.WarningHandler = warnings
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	version, err := client.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("reach the API server of %s: %w", path, err)
	}
	if version.Major != "1" || version.GitVersion == "" || strings.Contains(version.GitVersion, "master") {
		return nil, fmt.Errorf("the API server reports version %q: not a release build", version.GitVersion)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	proxyConfig, err := warningProxy(cfg, warnings)
	if err != nil {
		return nil, err
	}
	return &testCluster{
		client:     client,
		dynamic:    dyn,
		mapper:     restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery())),
		kubeconfig: proxyConfig,
		warnings:   warnings,
	}, nil
}

var warningHeader = regexp.MustCompile(`^299 \S+ ("(?:[^"\\]|\\.)*")`)

// warningProxy serves the API server on a loopback TLS port and records the Warning
// headers of its responses, then writes a kubeconfig for it. Helm's own handling of
// warnings (a log line at best) is not something a test can rely on; the header is.
// The proxy lives as long as the test binary.
func warningProxy(cfg *rest.Config, warnings *warningLog) (string, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return "", err
	}
	transport, err := rest.TransportFor(cfg) // adds the cluster's CA and the token
	if err != nil {
		return "", err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1, // watches stream
		ModifyResponse: func(resp *http.Response) error {
			for _, h := range resp.Header.Values("Warning") {
				text := h
				if m := warningHeader.FindStringSubmatch(h); m != nil {
					if s, err := strconv.Unquote(m[1]); err == nil {
						text = s
					}
				}
				warnings.add(fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, text))
			}
			return nil
		},
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.StartTLS()

	dir, err := os.MkdirTemp("", "deploy-test-kube-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   srv.URL,
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
	}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	return path, nil
}

// newNamespace creates a namespace that enforces (and warns and audits on) the restricted
// Pod Security Standard, waits for its default ServiceAccount (the controller manager
// creates it; Pods cannot be admitted before), and deletes it when the test ends.
func (c *testCluster) newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ctx := context.Background()
	ns, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: prefix + "-",
			Labels: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted",
				"pod-security.kubernetes.io/warn":    "restricted",
				"pod-security.kubernetes.io/audit":   "restricted",
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { c.deleteNamespace(t, ns.Name, false) })
	c.waitFor(t, time.Minute, "ServiceAccount default in "+ns.Name, func() (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	return ns.Name
}

// deleteNamespace deletes a namespace, and with wait, waits until the namespace controller
// has removed it and everything in it.
func (c *testCluster) deleteNamespace(t *testing.T, name string, wait bool) {
	t.Helper()
	ctx := context.Background()
	err := c.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", name, err)
		return
	}
	if !wait {
		return
	}
	c.waitFor(t, 2*time.Minute, "namespace "+name+" deleted", func() (bool, error) {
		_, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// waitFor polls cond until it holds, fails or the timeout passes (then the test fails).
func (c *testCluster) waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond) // poll interval, not synchronisation
	}
}

// helm runs the pinned Helm against the cluster (through the warning proxy).
func (c *testCluster) helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"KUBECONFIG=" + c.kubeconfig,
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data"),
	}
	return runEnv(t, 5*time.Minute, repoRoot, env, helm(t), args...)
}

// helmWithHooks runs a Helm command that may create hooks, and stands in for the kubelet
// for them: see hookRunner. It returns Helm's output and the runner, which tells what it
// did.
func (c *testCluster) helmWithHooks(t *testing.T, ns string, args ...string) ([]byte, *hookRunner, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &hookRunner{c: c, ns: ns, worker: workerBinary(t), done: map[types.UID]bool{}}
	if len(args) > 0 && args[0] == "test" {
		// The stand-in for ingest and query behind the test Pod (see runTestPod).
		dir := binaries(t)
		r.publisher, r.allInOne = filepath.Join(dir, "publisher"), filepath.Join(dir, "aggregator")
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		r.run(ctx)
	}()
	out, err := c.helm(t, args...)
	cancel()
	<-finished
	for _, e := range r.errs {
		t.Error(e)
	}
	return out, r, err
}

// hookRunner completes Helm's hooks the only honest way this cluster allows. Nothing runs
// Pods here, so for each hook Job it runs the Job's rendered command on this machine (the
// worker binary built from this repository, with the arguments and the environment the
// Job's Pod would get, Secrets and ConfigMaps resolved through the API), and then records
// the outcome in the Job's status subresource, as the Job controller would from the Pod's
// exit; Helm waits for exactly that status. Init containers a user adds to the Job
// (migration.initContainers: their own images, e.g. waiting for Postgres) are admitted but
// not run; the test Postgres is already up.
//
// A `helm test` Pod (the publisher, checking ingest and query end to end) is run the same
// way: its rendered command, with its environment resolved through the API, runs on this
// machine against the all-in-one binary, which serves the same API as ingest and query
// (the Services' host names in the command are rewritten to it), and the Pod's phase is
// recorded from the exit status. The data plane itself (ingest, worker and query as the
// rendered Deployments start them) is tested as processes by TestChartToProcess.
type hookRunner struct {
	c        *testCluster
	ns       string
	worker   string
	done     map[types.UID]bool
	ran      []string // hook Jobs run
	testPods []string // helm test Pods run

	publisher, allInOne string // binaries for the helm test Pods; empty: none expected
	errs                []error
}

func (r *hookRunner) run(ctx context.Context) {
	for ctx.Err() == nil {
		jobs, err := r.c.client.BatchV1().Jobs(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			if ctx.Err() == nil {
				r.errs = append(r.errs, fmt.Errorf("list hook Jobs: %w", err))
			}
			return
		}
		for i := range jobs.Items {
			job := &jobs.Items[i]
			if r.done[job.UID] || job.Annotations["helm.sh/hook"] == "" {
				continue
			}
			r.done[job.UID] = true
			if err := r.complete(ctx, job); err != nil {
				r.errs = append(r.errs, fmt.Errorf("hook Job %s: %w", job.Name, err))
			}
		}
		pods, err := r.c.client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			if ctx.Err() == nil {
				r.errs = append(r.errs, fmt.Errorf("list Pods: %w", err))
			}
			return
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			// A test Pod Helm kept from an earlier `helm test` (a failed one) is not run again.
			if r.done[p.UID] || r.publisher == "" || !slices.Contains(strings.Split(p.Annotations["helm.sh/hook"], ","), "test") {
				continue
			}
			r.done[p.UID] = true
			if err := r.runTestPod(ctx, p); err != nil {
				r.errs = append(r.errs, fmt.Errorf("helm test Pod %s: %w", p.Name, err))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // poll interval
		}
	}
}

// runTestPod runs a helm test Pod's publisher command against a fresh all-in-one (see
// hookRunner) and records the outcome as the Pod's phase, as the kubelet would.
func (r *hookRunner) runTestPod(ctx context.Context, p *corev1.Pod) error {
	r.testPods = append(r.testPods, p.Name)
	if len(p.Spec.Containers) != 1 || !strings.Contains(p.Spec.Containers[0].Image, "publisher") {
		return fmt.Errorf("containers %d, image %q: the harness runs exactly one publisher", len(p.Spec.Containers),
			p.Spec.Containers[0].Image)
	}
	ctr := p.Spec.Containers[0]
	env, err := r.resolveEnv(ctx, p.Name, ctr)
	if err != nil {
		return err
	}
	// The key the Pod sends (from the release's Secret) is the stand-in's only key.
	key := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PUBLISHER_API_KEY="); ok {
			key = v
		}
	}
	addr, stop, err := startAllInOne(ctx, r.allInOne, key)
	if err != nil {
		return err
	}
	defer stop()
	// Only the addresses of the ingest and query Services change.
	svcs, err := r.c.client.CoreV1().Services(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	var pairs []string
	for _, svc := range svcs.Items {
		switch svc.Labels["app.kubernetes.io/component"] {
		case "ingest", "query":
			pairs = append(pairs, fmt.Sprintf("%s:%d", svc.Name, svc.Spec.Ports[0].Port), addr)
		}
	}
	if len(pairs) != 4 {
		return fmt.Errorf("found %d of the ingest and query Services", len(pairs)/2)
	}
	rw := strings.NewReplacer(pairs...)
	args := slices.Clone(ctr.Command)
	for _, a := range ctr.Args {
		args = append(args, rw.Replace(a))
	}
	runCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, r.publisher, args...)
	cmd.Env = append(env, "PATH="+os.Getenv("PATH"))
	out, runErr := cmd.CombinedOutput()
	phase, reason, msg := corev1.PodSucceeded, "", ""
	if runErr != nil {
		phase, reason, msg = corev1.PodFailed, "Error", fmt.Sprintf("%v: %s", runErr, tail(out, 2000))
		r.errs = append(r.errs, fmt.Errorf("helm test Pod %s, run here: %s", p.Name, msg))
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := r.c.client.CoreV1().Pods(r.ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Phase, cur.Status.Reason, cur.Status.Message = phase, reason, msg
		_, err = r.c.client.CoreV1().Pods(r.ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// startAllInOne starts the all-in-one binary on a free port with an empty store (and key
// as its API key, when set) and waits until it is ready.
func startAllInOne(ctx context.Context, bin, key string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "helm-test-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"AGGREGATOR_ADDR=" + addr, "AGGREGATOR_DATA_DIR=" + dir, "AGGREGATOR_LOG_LEVEL=warn",
		"AGGREGATOR_API_KEYS=" + key}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(wctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
		select {
		case <-wctx.Done():
			stop()
			return "", nil, fmt.Errorf("the all-in-one at %s is not ready: %w", addr, wctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail is the last n bytes of b, for a status message.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (r *hookRunner) complete(ctx context.Context, job *batchv1.Job) error {
	spec := job.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return fmt.Errorf("%d containers; the harness runs exactly one", len(spec.Containers))
	}
	ctr := spec.Containers[0]
	if len(ctr.Command) > 0 || !slices.Equal(ctr.Args, []string{"migrate"}) || !strings.Contains(ctr.Image, "worker") {
		return fmt.Errorf("runs image %s command %q args %q; the harness knows how to run only the worker image's migrate", ctr.Image, ctr.Command, ctr.Args)
	}
	env, err := r.resolveEnv(ctx, job.Name+"-local", ctr)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, r.worker, ctr.Args...)
	// Only what the Pod would see (and PATH), so a setting the chart forgets cannot be
	// supplied by the test's own environment.
	cmd.Env = append(env, "PATH="+os.Getenv("PATH"))
	out, runErr := cmd.CombinedOutput()
	r.ran = append(r.ran, job.Name)

	now := metav1.Now()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := r.c.client.BatchV1().Jobs(r.ns).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Status.StartTime == nil {
			cur.Status.StartTime = &now
		}
		cur.Status.Active = 0
		cur.Status.Ready = new(int32)
		cur.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
		cond := func(typ batchv1.JobConditionType, reason, msg string) batchv1.JobCondition {
			return batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastProbeTime: now, LastTransitionTime: now}
		}
		if runErr != nil {
			cur.Status.Failed = 1
			msg := "run locally by the deploy test: " + runErr.Error()
			cur.Status.Conditions = append(cur.Status.Conditions,
				cond(batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded, msg),
				cond(batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded, msg))
		} else {
			cur.Status.Succeeded = 1
			cur.Status.CompletionTime = &now
			cur.Status.Conditions = append(cur.Status.Conditions,
				cond(batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached, "run locally by the deploy test"),
				cond(batchv1.JobComplete, batchv1.JobReasonCompletionsReached, "run locally by the deploy test"))
		}
		_, err = r.c.client.BatchV1().Jobs(r.ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil && runErr != nil {
			return fmt.Errorf("worker migrate failed: %w\n%s", runErr, out)
		}
		return err
	})
}

var podEnvRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// resolveEnv computes a container's environment as the kubelet would: envFrom, then env
// in order, with $(VAR) references to earlier variables expanded.
func (r *hookRunner) resolveEnv(ctx context.Context, podName string, ctr corev1.Container) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, from := range ctr.EnvFrom {
		data, err := r.sourceData(ctx, from.ConfigMapRef, from.SecretRef)
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			set(from.Prefix+k, v)
		}
	}
	for _, e := range ctr.Env {
		v, err := r.envValue(ctx, podName, ctr, e)
		if errors.Is(err, errOptionalMissing) {
			continue // as the kubelet does: the variable is not set
		}
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		v = podEnvRef.ReplaceAllStringFunc(v, func(ref string) string {
			if val, ok := vars[ref[2:len(ref)-1]]; ok {
				return val
			}
			return ref
		})
		set(e.Name, v)
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

func (r *hookRunner) sourceData(ctx context.Context, cm *corev1.ConfigMapEnvSource, s *corev1.SecretEnvSource) (map[string]string, error) {
	switch {
	case cm != nil:
		obj, err := r.c.client.CoreV1().ConfigMaps(r.ns).Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return obj.Data, nil
	case s != nil:
		obj, err := r.c.client.CoreV1().Secrets(r.ns).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		data := map[string]string{}
		for k, v := range obj.Data {
			data[k] = string(v)
		}
		return data, nil
	}
	return nil, errors.New("envFrom without a source")
}

// errOptionalMissing: an optional key that is not there leaves its variable unset.
var errOptionalMissing = errors.New("optional key missing")

func (r *hookRunner) envValue(ctx context.Context, podName string, ctr corev1.Container, e corev1.EnvVar) (string, error) {
	from := e.ValueFrom
	switch {
	case from == nil:
		return e.Value, nil
	case from.SecretKeyRef != nil:
		s, err := r.c.client.CoreV1().Secrets(r.ns).Get(ctx, from.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := s.Data[from.SecretKeyRef.Key]
		if !ok && from.SecretKeyRef.Optional != nil && *from.SecretKeyRef.Optional {
			return "", errOptionalMissing
		}
		if !ok {
			return "", fmt.Errorf("Secret %s has no key %s", s.Name, from.SecretKeyRef.Key)
		}
		return string(v), nil
	case from.ConfigMapKeyRef != nil:
		cm, err := r.c.client.CoreV1().ConfigMaps(r.ns).Get(ctx, from.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := cm.Data[from.ConfigMapKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("ConfigMap %s has no key %s", cm.Name, from.ConfigMapKeyRef.Key)
		}
		return v, nil
	case from.FieldRef != nil:
		switch from.FieldRef.FieldPath {
		case "metadata.name":
			return podName, nil
		case "metadata.namespace":
			return r.ns, nil
		}
		return "", fmt.Errorf("fieldRef %s is not resolved by this harness", from.FieldRef.FieldPath)
	case from.ResourceFieldRef != nil:
		ref := from.ResourceFieldRef
		res, ok := strings.CutPrefix(ref.Resource, "limits.")
		list := ctr.Resources.Limits
		if !ok {
			res, ok = strings.CutPrefix(ref.Resource, "requests.")
			list = ctr.Resources.Requests
		}
		q, found := list[corev1.ResourceName(res)]
		if !ok || !found {
			return "", fmt.Errorf("resourceFieldRef %s: not set on the container (the kubelet would use the node's capacity)", ref.Resource)
		}
		divisor := ref.Divisor.Value()
		if divisor == 0 {
			divisor = 1
		}
		return fmt.Sprint((q.Value() + divisor - 1) / divisor), nil
	}
	return "", errors.New("unsupported valueFrom")
}

var workerOnce struct {
	sync.Once
	path string
	err  error
}

// workerBinary builds the worker from this repository (the image's entry point), once.
func workerBinary(t *testing.T) string {
	t.Helper()
	workerOnce.Do(func() {
		dir := filepath.Join(repoRoot, ".cache", "deploy-test")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			workerOnce.err = err
			return
		}
		f, err := os.CreateTemp(dir, "worker-")
		if err != nil {
			workerOnce.err = err
			return
		}
		f.Close()
		env := []string{"GOWORK=" + filepath.Join(repoRoot, "go.work"), "CGO_ENABLED=0"}
		if _, err := runEnv(t, 5*time.Minute, repoRoot, env, "go", "build", "-o", f.Name(), "./services/worker"); err != nil {
			workerOnce.err = err
			return
		}
		workerOnce.path = filepath.Join(dir, "worker")
		workerOnce.err = os.Rename(f.Name(), workerOnce.path)
	})
	if workerOnce.err != nil {
		t.Fatalf("build the worker: %v", workerOnce.err)
	}
	return workerOnce.path
}

// decodeUnstructured splits a YAML stream into objects for server-side apply.
func decodeUnstructured(t *testing.T, stream []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := k8syaml.NewYAMLOrJSONDecoder(bufio.NewReader(bytes.NewReader(stream)), 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode manifests: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// applyServerSide applies objects as `kubectl apply --server-side` does (Namespaces first),
// objects without a namespace of their own going into ns. Every rejection fails the test.
func (c *testCluster) applyServerSide(t *testing.T, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	objs = slices.Clone(objs)
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace" })
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s %s: %v", gvk, o.GetName(), err)
			continue
		}
		var ri dynamic.ResourceInterface = c.dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(ns)
			}
			ri = c.dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager}); err != nil {
			t.Errorf("server-side apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// waitPodsAdmitted waits until the controllers have created the Pods of every Deployment
// (its current ReplicaSet at its full size) and StatefulSet (its first Pod) in ns, and the
// scheduler has considered each Pod. Pod Security admission enforces on Pods, not on their
// controllers, so this is where a restricted namespace accepts or rejects the chart.
func (c *testCluster) waitPodsAdmitted(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	var pending string
	deadline := time.Now().Add(90 * time.Second)
	for {
		var err error
		pending, err = c.podsPending(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		if pending == "" {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	events, _ := c.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	var msgs []string
	for _, e := range events.Items {
		msgs = append(msgs, fmt.Sprintf("%s %s: %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message))
	}
	t.Fatalf("namespace %s: %s\nwarning events:\n%s", ns, pending, strings.Join(msgs, "\n"))
}

// podsPending describes the first workload whose Pods are not all created and considered
// by the scheduler, or returns "".
func (c *testCluster) podsPending(ctx context.Context, ns string) (string, error) {
	deployments, err := c.client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	sets, err := c.client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	statefulSets, err := c.client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	podsOf := func(owner types.UID) []corev1.Pod {
		var out []corev1.Pod
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == owner {
				out = append(out, p)
			}
		}
		return out
	}
	scheduled := func(owner string, ps []corev1.Pod) string {
		for _, p := range ps {
			if !slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodScheduled }) {
				return fmt.Sprintf("%s: Pod %s not yet considered by the scheduler", owner, p.Name)
			}
		}
		return ""
	}
	for _, d := range deployments.Items {
		owner := "Deployment " + d.Name
		if d.Status.ObservedGeneration < d.Generation {
			return owner + ": not yet observed by the deployment controller", nil
		}
		revision := d.Annotations["deployment.kubernetes.io/revision"]
		var rs *appsv1.ReplicaSet
		for i := range sets.Items {
			s := &sets.Items[i]
			if ref := metav1.GetControllerOf(s); ref != nil && ref.UID == d.UID && s.Annotations["deployment.kubernetes.io/revision"] == revision {
				rs = s
			}
		}
		if rs == nil {
			return owner + ": no ReplicaSet of revision " + revision, nil
		}
		for _, cond := range rs.Status.Conditions {
			if cond.Type == appsv1.ReplicaSetReplicaFailure && cond.Status == corev1.ConditionTrue {
				return fmt.Sprintf("%s: ReplicaSet %s cannot create Pods: %s", owner, rs.Name, cond.Message), nil
			}
		}
		want := int32(1)
		if rs.Spec.Replicas != nil {
			want = *rs.Spec.Replicas
		}
		if d.Spec.Replicas != nil && *d.Spec.Replicas > 0 && want == 0 {
			return fmt.Sprintf("%s: ReplicaSet %s not scaled up yet", owner, rs.Name), nil
		}
		ps := podsOf(rs.UID)
		if int32(len(ps)) != want {
			return fmt.Sprintf("%s: ReplicaSet %s has %d of %d Pods", owner, rs.Name, len(ps), want), nil
		}
		if msg := scheduled(owner, ps); msg != "" {
			return msg, nil
		}
	}
	for _, s := range statefulSets.Items {
		owner := "StatefulSet " + s.Name
		ps := podsOf(s.UID)
		if s.Spec.Replicas != nil && *s.Spec.Replicas > 0 && len(ps) == 0 {
			return owner + ": no Pod created", nil
		}
		if msg := scheduled(owner, ps); msg != "" {
			return msg, nil
		}
	}
	return "", nil
}

// inventory lists every namespaced object in ns as "resource.group/name".
func (c *testCluster) inventory(t *testing.T, ns string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	lists, err := c.client.Discovery().ServerPreferredNamespacedResources()
	if err != nil {
		t.Fatalf("discover resources: %v", err)
	}
	out := map[string]bool{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range l.APIResources {
			// Events expire on their own; v1 Endpoints are deprecated (listing them draws a
			// warning) and mirrored by the EndpointSlices listed here.
			if !slices.Contains(res.Verbs, "list") || res.Name == "events" || (gv.Group == "" && res.Name == "endpoints") {
				continue
			}
			items, err := c.dynamic.Resource(gv.WithResource(res.Name)).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("list %s in %s: %v", res.Name, ns, err)
			}
			for _, it := range items.Items {
				key := res.Name
				if gv.Group != "" {
					key += "." + gv.Group
				}
				out[key+"/"+it.GetName()] = true
			}
		}
	}
	return out
}

// waitInventory waits until ns holds exactly the objects of want.
func (c *testCluster) waitInventory(t *testing.T, ns string, want map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := c.inventory(t, ns)
		var left, gone []string
		for k := range got {
			if !want[k] {
				left = append(left, k)
			}
		}
		for k := range want {
			if !got[k] {
				gone = append(gone, k)
			}
		}
		if len(left) == 0 && len(gone) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(left)
			sort.Strings(gone)
			t.Fatalf("namespace %s: left behind %v; removed although not the chart's %v", ns, left, gone)
		}
		time.Sleep(500 * time.Millisecond) // poll interval: the garbage collector deletes the Pods
	}
}

// provideReferenced creates what a rendering of the chart refers to but does not create, as
// the operator does before installing: ConfigMaps and Secrets named in env, envFrom and
// volumes (with the keys referred to), and PriorityClasses. Optional references are left
// out, and so is anything that already exists (e.g. the Secret named by
// secret.existingSecret, created by the test with real values).
func (c *testCluster) provideReferenced(t *testing.T, ns string, manifests []byte) {
	t.Helper()
	ctx := context.Background()
	rendered := map[string]bool{}
	var specs []corev1.PodSpec
	for _, o := range decodeUnstructured(t, manifests) {
		rendered[o.GetKind()+"/"+o.GetName()] = true
		path := []string{"spec", "template", "spec"}
		if o.GetKind() == "Pod" {
			path = []string{"spec"}
		}
		m, found, err := unstructured.NestedMap(o.Object, path...)
		if err != nil || !found {
			continue
		}
		var spec corev1.PodSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &spec); err != nil {
			t.Fatalf("%s %s: pod spec: %v", o.GetKind(), o.GetName(), err)
		}
		specs = append(specs, spec)
	}
	configMaps, secrets := map[string]map[string]bool{}, map[string]map[string]bool{}
	ref := func(set map[string]map[string]bool, name, key string, optional *bool) {
		if optional != nil && *optional {
			return
		}
		if set[name] == nil {
			set[name] = map[string]bool{}
		}
		if key != "" {
			set[name][key] = true
		}
	}
	priorityClasses := map[string]bool{}
	for _, spec := range specs {
		if spec.PriorityClassName != "" {
			priorityClasses[spec.PriorityClassName] = true
		}
		for _, ctr := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, from := range ctr.EnvFrom {
				if r := from.ConfigMapRef; r != nil {
					ref(configMaps, r.Name, "", r.Optional)
				}
				if r := from.SecretRef; r != nil {
					ref(secrets, r.Name, "", r.Optional)
				}
			}
			for _, e := range ctr.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					ref(configMaps, r.Name, r.Key, r.Optional)
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					ref(secrets, r.Name, r.Key, r.Optional)
				}
			}
		}
		for _, v := range spec.Volumes {
			if cm := v.ConfigMap; cm != nil {
				ref(configMaps, cm.Name, "", cm.Optional)
				for _, it := range cm.Items {
					ref(configMaps, cm.Name, it.Key, cm.Optional)
				}
			}
			if s := v.Secret; s != nil {
				ref(secrets, s.SecretName, "", s.Optional)
				for _, it := range s.Items {
					ref(secrets, s.SecretName, it.Key, s.Optional)
				}
			}
			if p := v.Projected; p != nil {
				for _, src := range p.Sources {
					if cm := src.ConfigMap; cm != nil {
						ref(configMaps, cm.Name, "", cm.Optional)
						for _, it := range cm.Items {
							ref(configMaps, cm.Name, it.Key, cm.Optional)
						}
					}
					if s := src.Secret; s != nil {
						ref(secrets, s.Name, "", s.Optional)
						for _, it := range s.Items {
							ref(secrets, s.Name, it.Key, s.Optional)
						}
					}
				}
			}
		}
	}
	data := func(keys map[string]bool) map[string]string {
		d := map[string]string{}
		for k := range keys {
			d[k] = "provided-by-the-operator"
		}
		return d
	}
	for name, keys := range configMaps {
		if rendered["ConfigMap/"+name] {
			continue
		}
		_, err := c.client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data(keys)}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create ConfigMap %s: %v", name, err)
		}
	}
	for name, keys := range secrets {
		if rendered["Secret/"+name] {
			continue
		}
		_, err := c.client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data(keys)}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create Secret %s: %v", name, err)
		}
	}
	for name := range priorityClasses {
		if rendered["PriorityClass/"+name] {
			continue
		}
		pcs := c.client.SchedulingV1().PriorityClasses()
		_, err := pcs.Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: 0}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			t.Fatalf("create PriorityClass %s: %v", name, err)
		}
		t.Cleanup(func() {
			if err := pcs.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete PriorityClass %s: %v", name, err)
			}
		})
	}
}
