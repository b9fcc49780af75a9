package deploy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// clusterRelease is one Helm release of the chart in its own restricted namespace, with a
// Postgres database of its own for the migration hook.
type clusterRelease struct {
	c        *testCluster
	ns       string
	name     string
	fullname string
	dbURL    string
}

func newClusterRelease(t *testing.T, c *testCluster, values map[string]any) *clusterRelease {
	t.Helper()
	r := &clusterRelease{c: c, ns: c.newNamespace(t, "chart"), name: release, dbURL: testdeps.NewPostgresDB(t)}
	r.fullname = release + "-event-aggregator"
	if f := stringValue(values, "fullnameOverride"); f != "" {
		r.fullname = f
	}
	return r
}

// createExistingSecret creates the Secret a values file names in secret.existingSecret,
// with its keys, pointing at the test database, as an operator would before installing.
func (r *clusterRelease) createExistingSecret(t *testing.T, values map[string]any) {
	t.Helper()
	name := stringValue(values, "secret.existingSecret")
	data := map[string]string{}
	for key, v := range map[string]string{
		"secret.keys.postgresUrl": r.dbURL,
		"secret.keys.redisUrl":    "redis://127.0.0.1:6379/0",
		"secret.keys.apiKeys":     "test-key",
	} {
		if k := stringValue(values, key); k != "" {
			data[k] = v
		}
	}
	_, err := r.c.client.CoreV1().Secrets(r.ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		StringData: data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Secret %s: %v", name, err)
	}
}

// helm runs install, upgrade or rollback of the release with its hooks (run locally, see
// hookRunner), and returns the hook Jobs that ran.
func (r *clusterRelease) helm(t *testing.T, verb string, args ...string) []string {
	t.Helper()
	all := []string{verb, r.name}
	if verb == "install" || verb == "upgrade" {
		all = append(append(all, chartDir), r.urlArgs()...)
	}
	all = append(all, append(args, "--namespace", r.ns, "--timeout", "3m")...)
	_, hooks, err := r.c.helmWithHooks(t, r.ns, all...)
	if err != nil {
		t.Fatalf("helm %s: %v", verb, err)
	}
	return hooks.ran
}

// helmTest runs `helm test`. Its Pods run here as processes against the all-in-one (see
// hookRunner): every one must pass, and the chart's test Pod must have run when enabled.
func (r *clusterRelease) helmTest(t *testing.T) {
	t.Helper()
	out, hooks, err := r.c.helmWithHooks(t, r.ns, "test", r.name, "--namespace", r.ns, "--timeout", "4m")
	if err != nil {
		t.Errorf("helm test: %v\n%s", err, out)
	}
	if len(hooks.testPods) == 0 {
		t.Error("helm test ran no test Pod: the chart renders one (templates/tests)")
	}
	t.Logf("helm test ran %v here", hooks.testPods)
}

// urlArgs sets the connection URLs: the release's own database, and the test Redis (which
// nothing here connects to).
func (r *clusterRelease) urlArgs() []string {
	return []string{"--set", "postgres.url=" + r.dbURL, "--set", "redis.url=redis://127.0.0.1:6379/0"}
}

// provideFor renders the chart with the values arguments and creates what it refers to
// without creating it (see provideReferenced).
func (r *clusterRelease) provideFor(t *testing.T, valuesArgs ...string) {
	t.Helper()
	args := append(append([]string{"template", r.name, chartDir, "--namespace", r.ns}, r.urlArgs()...), valuesArgs...)
	out, err := run(t, 2*time.Minute, repoRoot, helm(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	r.c.provideReferenced(t, r.ns, out)
}

// checkMigrated checks that the hook Job ran (and only it), and that it migrated the
// release's database.
func (r *clusterRelease) checkMigrated(t *testing.T, ran []string) {
	t.Helper()
	r.checkMigratedBy(t, ran, r.fullname+"-migrate")
}

func (r *clusterRelease) checkMigratedBy(t *testing.T, ran []string, job string) {
	t.Helper()
	if want := []string{job}; !slices.Equal(ran, want) {
		t.Fatalf("hook Jobs run: %v, want %v", ran, want)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var version int64
	if err := conn.QueryRow(ctx, "SELECT max(version_id) FROM goose_db_version").Scan(&version); err != nil {
		t.Fatalf("the migration hook left no schema version: %v", err)
	}
	if version < 1 {
		t.Fatalf("schema version %d after the migration hook", version)
	}
}

func (r *clusterRelease) revisionStatus(t *testing.T) (int, string) {
	t.Helper()
	out, err := r.c.helm(t, "status", r.name, "--namespace", r.ns, "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Version int `json:"version"`
		Info    struct {
			Status string `json:"status"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("helm status: %v", err)
	}
	return st.Version, st.Info.Status
}

func (r *clusterRelease) deployment(t *testing.T, component string) *appsv1.Deployment {
	t.Helper()
	d, err := r.c.client.AppsV1().Deployments(r.ns).Get(context.Background(), r.fullname+"-"+component, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Deployment %s: %v", component, err)
	}
	return d
}

// present reports whether a Get found its object, failing the test on any error but
// NotFound.
func present(t *testing.T, err error) bool {
	t.Helper()
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestClusterHelmInstallHooksRunLocally installs the chart with its defaults and with every
// ci/ values file into a namespace enforcing the restricted Pod Security Standard, with its
// hooks. The migration hook Job is completed by running its rendered command on this
// machine against the test Postgres and recording the result in the Job's status (no
// kubelet here). Then the controllers must create every Pod (Pod Security admission
// enforces on Pods), `helm test` must pass, and `helm uninstall` must leave the namespace as
// it was.
func TestClusterHelmInstallHooksRunLocally(t *testing.T) {
	c := cluster(t)
	for _, cc := range chartCases(t) {
		t.Run(cc.name, func(t *testing.T) {
			r := newClusterRelease(t, c, cc.values)
			if stringValue(cc.values, "secret.existingSecret") != "" {
				r.createExistingSecret(t, cc.values)
			}
			var args []string
			if cc.file != "" {
				args = append(args, "-f", cc.file)
			}
			r.provideFor(t, args...)
			before := c.inventory(t, r.ns)

			ran := r.helm(t, "install", args...)
			if boolValue(cc.values, "migration.enabled") {
				r.checkMigrated(t, ran)
			} else if len(ran) > 0 {
				t.Errorf("hook Jobs %v ran with migration.enabled=false", ran)
			}
			if v, st := r.revisionStatus(t); v != 1 || st != "deployed" {
				t.Errorf("helm status: revision %d %s, want 1 deployed", v, st)
			}
			c.waitPodsAdmitted(t, r.ns)

			r.helmTest(t)

			if _, _, err := c.helmWithHooks(t, r.ns, "uninstall", r.name, "--namespace", r.ns, "--wait", "--timeout", "2m"); err != nil {
				t.Fatalf("helm uninstall: %v", err)
			}
			c.waitInventory(t, r.ns, before)
		})
	}
}

// TestClusterHelmUpgradeRollbackHooksRunLocally walks one release through the changes a
// user makes, each a `helm upgrade` with its pre-upgrade migration hook (run locally, as in
// TestClusterHelmInstallHooksRunLocally), then rolls back to the first revision and
// uninstalls.
func TestClusterHelmUpgradeRollbackHooksRunLocally(t *testing.T) {
	c := cluster(t)
	defaults := readYAML(t, repoPath(chartDir, "values.yaml"))
	r := newClusterRelease(t, c, defaults)
	// What the operator provides for the last step, ci/full-values.yaml, exists from the start.
	fullFile := filepath.Join(chartDir, "ci", "full-values.yaml")
	full := readYAML(t, repoPath(fullFile))
	r.createExistingSecret(t, merge(readYAML(t, repoPath(chartDir, "values.yaml")), full))
	r.provideFor(t, "-f", fullFile)
	before := c.inventory(t, r.ns)
	hpas := r.c.client.AutoscalingV2().HorizontalPodAutoscalers(r.ns)
	netpols := r.c.client.NetworkingV1().NetworkPolicies(r.ns)
	secrets := r.c.client.CoreV1().Secrets(r.ns)
	ctx := context.Background()
	hpaExists := func() bool {
		_, err := hpas.Get(ctx, r.fullname+"-worker", metav1.GetOptions{})
		return present(t, err)
	}
	netpolExists := func(component string) bool {
		_, err := netpols.Get(ctx, r.fullname+"-"+component, metav1.GetOptions{})
		return present(t, err)
	}
	chartSecretExists := func() bool {
		_, err := secrets.Get(ctx, r.fullname, metav1.GetOptions{})
		return present(t, err)
	}
	envOf := func(d *appsv1.Deployment, name string) (corev1.EnvVar, bool) {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == name {
				return e, true
			}
		}
		return corev1.EnvVar{}, false
	}

	r.checkMigrated(t, r.helm(t, "install"))
	c.waitPodsAdmitted(t, r.ns)
	firstIngestReplicas := *r.deployment(t, "ingest").Spec.Replicas
	if !hpaExists() || netpolExists("ingest") || !chartSecretExists() {
		t.Fatalf("defaults: HPA %v, NetworkPolicy %v, chart Secret %v; want true, false, true", hpaExists(), netpolExists("ingest"), chartSecretExists())
	}

	// Each step keeps the earlier ones (--reuse-values), as a user tuning a release does.
	steps := []struct {
		name  string
		set   []string
		check func(t *testing.T)
	}{
		{"replicas", []string{"ingest.replicas=3", "query.replicas=2"}, func(t *testing.T) {
			if got := *r.deployment(t, "ingest").Spec.Replicas; got != 3 {
				t.Errorf("ingest replicas %d, want 3", got)
			}
		}},
		{"autoscaling off", []string{"worker.autoscaling.enabled=false", "worker.replicas=2"}, func(t *testing.T) {
			if hpaExists() {
				t.Error("HPA still exists with worker.autoscaling.enabled=false")
			}
			if got := *r.deployment(t, "worker").Spec.Replicas; got != 2 {
				t.Errorf("worker replicas %d, want 2", got)
			}
		}},
		{"autoscaling on", []string{"worker.autoscaling.enabled=true"}, func(t *testing.T) {
			if !hpaExists() {
				t.Error("no HPA with worker.autoscaling.enabled=true")
			}
		}},
		{"tracing on", []string{"otel.endpoint=http://jaeger.observability:4318"}, func(t *testing.T) {
			for _, comp := range []string{"ingest", "worker", "query"} {
				if e, ok := envOf(r.deployment(t, comp), "OTEL_EXPORTER_OTLP_ENDPOINT"); !ok || e.Value != "http://jaeger.observability:4318" {
					t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %+v", comp, e)
				}
			}
		}},
		{"network policy on", []string{"networkPolicy.enabled=true"}, func(t *testing.T) {
			for _, comp := range []string{"ingest", "worker", "query"} {
				if !netpolExists(comp) {
					t.Errorf("no NetworkPolicy for %s", comp)
				}
			}
		}},
		{"existing secret", []string{"secret.existingSecret=operator-credentials"}, func(t *testing.T) {
			if chartSecretExists() {
				t.Error("the chart's Secret still exists with secret.existingSecret")
			}
			e, _ := envOf(r.deployment(t, "worker"), "AGGREGATOR_POSTGRES_URL")
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "operator-credentials" {
				t.Errorf("worker AGGREGATOR_POSTGRES_URL: %+v, want from Secret operator-credentials", e)
			}
		}},
	}
	for i, step := range steps {
		if step.name == "existing secret" {
			r.createExistingSecret(t, merge(readYAML(t, repoPath(chartDir, "values.yaml")),
				map[string]any{"secret": map[string]any{"existingSecret": "operator-credentials"}}))
			before["secrets/operator-credentials"] = true // the operator's, kept by uninstall
		}
		args := []string{"--reuse-values"}
		for _, s := range step.set {
			args = append(args, "--set", s)
		}
		r.checkMigrated(t, r.helm(t, "upgrade", args...))
		if v, st := r.revisionStatus(t); v != i+2 || st != "deployed" {
			t.Fatalf("%s: helm status revision %d %s, want %d deployed", step.name, v, st, i+2)
		}
		c.waitPodsAdmitted(t, r.ns)
		step.check(t)
		if t.Failed() {
			t.Fatalf("upgrade %q failed", step.name)
		}
	}

	// Then to another values file altogether (--reset-values): every optional feature, the
	// custom resources (KEDA's ScaledObject, prometheus-operator's ServiceMonitor) among
	// them, and other names (fullnameOverride).
	fullName := stringValue(full, "fullnameOverride")
	r.checkMigratedBy(t, r.helm(t, "upgrade", "--reset-values", "-f", fullFile), fullName+"-migrate")
	if v, st := r.revisionStatus(t); v != len(steps)+2 || st != "deployed" {
		t.Fatalf("full values: helm status revision %d %s, want %d deployed", v, st, len(steps)+2)
	}
	c.waitPodsAdmitted(t, r.ns)
	scaledObjects := c.dynamic.Resource(schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}).Namespace(r.ns)
	serviceMonitors := c.dynamic.Resource(schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}).Namespace(r.ns)
	_, err := scaledObjects.Get(ctx, fullName+"-worker", metav1.GetOptions{})
	if !present(t, err) {
		t.Error("full values: no ScaledObject")
	}
	_, err = serviceMonitors.Get(ctx, fullName, metav1.GetOptions{})
	if !present(t, err) {
		t.Error("full values: no ServiceMonitor")
	}
	_, err = c.client.AppsV1().Deployments(r.ns).Get(ctx, r.fullname+"-ingest", metav1.GetOptions{})
	if present(t, err) {
		t.Error("full values: the Deployments of the old name remain")
	}

	// Rollback runs no hook of this chart (it has no pre-rollback hook).
	if ran := r.helm(t, "rollback", "1"); len(ran) > 0 {
		t.Errorf("rollback ran hook Jobs %v", ran)
	}
	if v, st := r.revisionStatus(t); v != len(steps)+3 || st != "deployed" {
		t.Errorf("after rollback: revision %d %s, want %d deployed", v, st, len(steps)+3)
	}
	_, err = scaledObjects.Get(ctx, fullName+"-worker", metav1.GetOptions{})
	if present(t, err) {
		t.Error("after rollback: the ScaledObject remains")
	}
	c.waitPodsAdmitted(t, r.ns)
	if got := *r.deployment(t, "ingest").Spec.Replicas; got != firstIngestReplicas {
		t.Errorf("after rollback: ingest replicas %d, want %d", got, firstIngestReplicas)
	}
	if netpolExists("ingest") || !chartSecretExists() || !hpaExists() {
		t.Errorf("after rollback: NetworkPolicy %v, chart Secret %v, HPA %v; want false, true, true", netpolExists("ingest"), chartSecretExists(), hpaExists())
	}
	if _, ok := envOf(r.deployment(t, "worker"), "OTEL_EXPORTER_OTLP_ENDPOINT"); ok {
		t.Error("after rollback: tracing still on")
	}

	if _, _, err := c.helmWithHooks(t, r.ns, "uninstall", r.name, "--namespace", r.ns, "--wait", "--timeout", "2m"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	c.waitInventory(t, r.ns, before)
}

// TestClusterRejectsWhatTemplateAccepts proves that these tests catch what rendering
// cannot: an annotation key Kubernetes does not allow renders and passes the values schema,
// and only the API server rejects it.
func TestClusterRejectsWhatTemplateAccepts(t *testing.T) {
	c := cluster(t)
	values := filepath.Join(t.TempDir(), "invalid-values.yaml")
	if err := os.WriteFile(values, []byte("postgres:\n  url: postgres://localhost/db\nredis:\n  url: redis://localhost:6379/0\nmigration:\n  enabled: false\ningest:\n  podAnnotations:\n    \"not a valid key\": x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, 2*time.Minute, repoRoot, helm(t), "template", release, chartDir, "-f", values); err != nil {
		t.Fatalf("helm template rejects the values itself, so this proves nothing: %v", err)
	}
	ns := c.newNamespace(t, "invalid")
	_, _, err := c.helmWithHooks(t, ns, "install", release, chartDir, "-f", values, "--namespace", ns, "--timeout", "1m")
	if err == nil {
		t.Fatal("helm install of an invalid annotation key succeeded")
	}
	if !strings.Contains(err.Error(), "is invalid: spec.template.annotations: Invalid value: \"not a valid key\"") {
		t.Fatalf("helm install failed, but not on the API server's validation of the annotation: %v", err)
	}
}

// TestClusterKustomizeServerSide builds k8s/base and every k8s/overlays/* with kustomize
// and applies them server-side; the controllers must create their Pods.
func TestClusterKustomizeServerSide(t *testing.T) {
	c := cluster(t)
	dirs := []string{"k8s/base"}
	overlays, err := filepath.Glob(repoPath("k8s", "overlays", "*"))
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays in k8s/overlays: %v", err)
	}
	for _, o := range overlays {
		rel, _ := filepath.Rel(repoRoot, o)
		dirs = append(dirs, rel)
	}
	for _, dir := range dirs {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			objs := decodeUnstructured(t, kustomizeBuild(t, dir))
			ns := ""
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					ns = o.GetName()
				}
			}
			if ns == "" {
				// The base names no namespace: it goes into one of the test's.
				ns = c.newNamespace(t, "kustomize")
			} else {
				t.Cleanup(func() { c.deleteNamespace(t, ns, true) })
			}
			c.applyServerSide(t, ns, objs)
			if t.Failed() {
				return
			}
			c.waitPodsAdmitted(t, ns)
		})
	}
}

func kustomizeBuild(t *testing.T, dir string) []byte {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), repoPath(dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return out
}

// TestClusterSkaffoldRenderServerSide applies what `skaffold render` produces for
// skaffold.yaml, server-side. Skaffold itself is not built (it is a large tool and needs a
// container engine for its builds); its render is reproduced from the same inputs, read
// from skaffold.yaml: `kustomize build` of each manifests path, and `helm template` of each
// release with its namespace, values files and image values (IMAGE_REPO_x/IMAGE_TAG_x set
// to each artifact's image and a commit tag, as its gitCommit tag policy would).
func TestClusterSkaffoldRenderServerSide(t *testing.T) {
	c := cluster(t)
	var stream []byte
	namespaces := map[string]bool{}
	for _, cfg := range loadSkaffold(t) {
		if cfg.Manifests != nil && cfg.Manifests.Kustomize != nil {
			for _, p := range cfg.Manifests.Kustomize.Paths {
				stream = append(stream, "\n---\n"...)
				stream = append(stream, kustomizeBuild(t, p)...)
			}
		}
		if cfg.Deploy == nil || cfg.Deploy.Helm == nil {
			continue
		}
		vars := map[string]string{}
		if cfg.Build != nil {
			for _, a := range cfg.Build.Artifacts {
				vars["IMAGE_REPO_"+imageKey(a.Image)] = a.Image
				vars["IMAGE_TAG_"+imageKey(a.Image)] = "0123abc"
			}
		}
		for _, rel := range cfg.Deploy.Helm.Releases {
			args := []string{"template", rel.Name, rel.ChartPath, "--namespace", rel.Namespace}
			for _, f := range rel.ValuesFiles {
				args = append(args, "-f", f)
			}
			keys := make([]string, 0, len(rel.SetValueTemplates))
			for k := range rel.SetValueTemplates {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				tpl := rel.SetValueTemplates[k]
				v := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(tpl), "{{."), "}}"))
				val, ok := vars[v]
				if !ok {
					t.Fatalf("setValueTemplates %s: %q names no image skaffold builds", k, tpl)
				}
				args = append(args, "--set", k+"="+val)
			}
			out, err := run(t, 2*time.Minute, repoRoot, helm(t), args...)
			if err != nil {
				t.Fatal(err)
			}
			stream = append(stream, "\n---\n"...)
			stream = append(stream, out...)
			namespaces[rel.Namespace] = true
		}
	}
	objs := decodeUnstructured(t, stream)
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			namespaces[o.GetName()] = true
		}
	}
	if len(namespaces) != 1 {
		t.Fatalf("skaffold.yaml deploys into namespaces %v, want one", namespaces)
	}
	var ns string
	for n := range namespaces {
		ns = n
	}
	if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" }) {
		// helm's createNamespace
		if _, err := c.client.CoreV1().Namespaces().Create(context.Background(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { c.deleteNamespace(t, ns, true) })
	c.applyServerSide(t, ns, objs)
	if t.Failed() {
		return
	}
	c.waitPodsAdmitted(t, ns)
}

// TestClusterWarningsAreCaught proves that a warning the API server sends to Helm (or any
// other subprocess using the tests' kubeconfig) is recorded: a Deployment whose Pods break
// the restricted Pod Security Standard draws one, sent through the same proxy.
func TestClusterWarningsAreCaught(t *testing.T) {
	c := cluster(t)
	ns := c.newNamespace(t, "warnings")
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WarningHandler = rest.NoWarnings{} // only the proxy records this one
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := c.warnings.len()
	labels := map[string]string{"app": "root"}
	_, err = client.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "root"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.37"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := c.warnings.take(start)
	if len(got) != 1 || !strings.Contains(got[0], `would violate PodSecurity "restricted:`) {
		t.Fatalf("warnings recorded by the proxy: %q, want the Pod Security warning", got)
	}
}
