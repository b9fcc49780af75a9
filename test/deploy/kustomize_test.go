package deploy

import (
	"net"
	"net/url"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const devNamespace = "event-aggregator-dev"

// kustomize builds a kustomization in-process, as `kubectl kustomize` would, and decodes
// its output strictly.
func kustomize(t *testing.T, dir string) []object {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), repoPath(dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return decodeAll(t, out, "kustomize build "+dir)
}

func TestKustomizeBase(t *testing.T) {
	objs := kustomize(t, "k8s/base")
	checkServices(t, objs)
	for _, name := range []string{"kafka", "postgres"} {
		if byName[appsv1.StatefulSet](objs, name) == nil {
			t.Errorf("no StatefulSet %s", name)
		}
	}
	for _, name := range []string{"redis", "jaeger"} {
		if byName[appsv1.Deployment](objs, name) == nil {
			t.Errorf("no Deployment %s", name)
		}
	}
}

func TestKustomizeDev(t *testing.T) {
	objs := kustomize(t, "k8s/overlays/dev")
	if byName[corev1.Namespace](objs, devNamespace) == nil {
		t.Errorf("no Namespace %s", devNamespace)
	}
	for _, o := range objs {
		if o.kind != "Namespace" && o.namespace != devNamespace {
			t.Errorf("%s: namespace %q, want %q", o, o.namespace, devNamespace)
		}
	}
	checkServices(t, objs)

	images := map[string]string{}
	for _, s := range find[appsv1.StatefulSet](objs) {
		checkPodTemplate(t, "StatefulSet "+s.Name, s.Spec.Selector, &s.Spec.Template)
		if headless := byName[corev1.Service](objs, s.Spec.ServiceName); headless == nil {
			t.Errorf("StatefulSet %s: serviceName %s is not a Service", s.Name, s.Spec.ServiceName)
		}
		images[s.Name] = s.Spec.Template.Spec.Containers[0].Image
	}
	for _, d := range find[appsv1.Deployment](objs) {
		checkPodTemplate(t, "Deployment "+d.Name, d.Spec.Selector, &d.Spec.Template)
		images[d.Name] = d.Spec.Template.Spec.Containers[0].Image
	}
	for name, prefix := range map[string]string{
		"kafka":    "apache/kafka:",
		"postgres": "postgres:16",
		"redis":    "redis:7",
		"jaeger":   "jaegertracing/jaeger:2.",
	} {
		if !strings.HasPrefix(images[name], prefix) {
			t.Errorf("%s runs image %q, want %s…", name, images[name], prefix)
		}
	}

	// Kafka in KRaft mode: one process is broker and controller.
	if kafka := byName[appsv1.StatefulSet](objs, "kafka"); kafka != nil {
		env := map[string]string{}
		for _, e := range kafka.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["KAFKA_PROCESS_ROLES"] != "broker,controller" || env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "" {
			t.Errorf("kafka is not a single KRaft node: %v", env)
		}
		if !strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], kafka.Spec.ServiceName) {
			t.Errorf("kafka advertises %q, not a name of its headless Service %s", env["KAFKA_ADVERTISED_LISTENERS"], kafka.Spec.ServiceName)
		}
		// The image maps every KAFKA_* variable to a setting: Service links must stay out.
		if es := kafka.Spec.Template.Spec.EnableServiceLinks; es == nil || *es {
			t.Errorf("kafka: enableServiceLinks must be false")
		}
	}
	if redis := byName[appsv1.Deployment](objs, "redis"); redis != nil {
		args := strings.Join(redis.Spec.Template.Spec.Containers[0].Args, " ")
		if !strings.Contains(args, "--appendonly yes") {
			t.Errorf("redis args %q: the append-only file is off", args)
		}
	}
}

// TestSkaffoldValuesReachDevInfra checks that the chart values skaffold deploys with point
// at the Services (and the credentials) of k8s/overlays/dev.
func TestSkaffoldValuesReachDevInfra(t *testing.T) {
	objs := kustomize(t, "k8s/overlays/dev")
	values := readYAML(t, repoPath(chartDir, "ci", "skaffold-values.yaml"))

	hostPort := func(what, hp string) (string, int32) {
		host, p, err := net.SplitHostPort(hp)
		if err != nil {
			t.Fatalf("%s %q: %v", what, hp, err)
		}
		return host, port(t, ":"+p)
	}
	reachable := func(what, hp string) {
		host, p := hostPort(what, hp)
		if !hasServicePort(objs, host, p) {
			t.Errorf("%s %s: no Service %s with port %d in k8s/overlays/dev", what, hp, host, p)
		}
	}
	brokers, _ := value(values, "kafka.brokers").([]any)
	if len(brokers) == 0 {
		t.Error("skaffold values set no kafka.brokers")
	}
	for _, b := range brokers {
		reachable("kafka broker", b.(string))
	}
	for _, key := range []string{"postgres.url", "redis.url", "otel.endpoint"} {
		u, err := url.Parse(stringValue(values, key))
		if err != nil || u.Host == "" {
			t.Errorf("%s %q: %v", key, stringValue(values, key), err)
			continue
		}
		reachable(key, u.Host)
		if key == "postgres.url" {
			secret := byName[corev1.Secret](objs, "postgres")
			if secret == nil {
				t.Fatal("no Secret postgres")
			}
			pass, _ := u.User.Password()
			if u.User.Username() != secret.StringData["POSTGRES_USER"] || pass != secret.StringData["POSTGRES_PASSWORD"] ||
				strings.TrimPrefix(u.Path, "/") != secret.StringData["POSTGRES_DB"] {
				t.Errorf("postgres.url %s does not match the credentials of Secret postgres", u.Redacted())
			}
		}
	}
}
