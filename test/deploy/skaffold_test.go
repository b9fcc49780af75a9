package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The parts of skaffold's v4beta13 schema that skaffold.yaml uses, with its field names:
// decoding strictly into them rejects misspelt or misplaced fields.
type skaffoldConfig struct {
	APIVersion string                `json:"apiVersion"`
	Kind       string                `json:"kind"`
	Metadata   struct{ Name string } `json:"metadata"`
	Requires   []struct {
		Configs []string `json:"configs,omitempty"`
		Path    string   `json:"path,omitempty"`
	} `json:"requires,omitempty"`
	Build       *skaffoldBuild     `json:"build,omitempty"`
	Manifests   *skaffoldManifests `json:"manifests,omitempty"`
	Deploy      *skaffoldDeploy    `json:"deploy,omitempty"`
	PortForward []skaffoldForward  `json:"portForward,omitempty"`
	Profiles    []skaffoldProfile  `json:"profiles,omitempty"`
}

type skaffoldBuild struct {
	TagPolicy *struct {
		GitCommit *struct {
			Variant string `json:"variant,omitempty"`
		} `json:"gitCommit,omitempty"`
	} `json:"tagPolicy,omitempty"`
	Local *struct {
		Push        *bool `json:"push,omitempty"`
		UseBuildkit *bool `json:"useBuildkit,omitempty"`
		Concurrency *int  `json:"concurrency,omitempty"`
	} `json:"local,omitempty"`
	Artifacts []skaffoldArtifact `json:"artifacts,omitempty"`
}

type skaffoldArtifact struct {
	Image   string `json:"image"`
	Context string `json:"context,omitempty"`
	Docker  *struct {
		Dockerfile string `json:"dockerfile,omitempty"`
	} `json:"docker,omitempty"`
}

type skaffoldManifests struct {
	Kustomize *struct {
		Paths []string `json:"paths,omitempty"`
	} `json:"kustomize,omitempty"`
}

type skaffoldDeploy struct {
	Kubectl *struct{} `json:"kubectl,omitempty"`
	Helm    *struct {
		Releases []skaffoldRelease `json:"releases"`
	} `json:"helm,omitempty"`
}

type skaffoldRelease struct {
	Name              string            `json:"name"`
	ChartPath         string            `json:"chartPath,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	CreateNamespace   *bool             `json:"createNamespace,omitempty"`
	ValuesFiles       []string          `json:"valuesFiles,omitempty"`
	SetValueTemplates map[string]string `json:"setValueTemplates,omitempty"`
	Wait              bool              `json:"wait,omitempty"`
}

type skaffoldForward struct {
	ResourceType string `json:"resourceType"`
	ResourceName string `json:"resourceName"`
	Namespace    string `json:"namespace,omitempty"`
	Port         int32  `json:"port"`
	LocalPort    int32  `json:"localPort,omitempty"`
}

type skaffoldProfile struct {
	Name       string `json:"name"`
	Activation []struct {
		KubeContext string `json:"kubeContext,omitempty"`
		Env         string `json:"env,omitempty"`
		Command     string `json:"command,omitempty"`
	} `json:"activation,omitempty"`
	Build   *skaffoldBuild `json:"build,omitempty"`
	Patches []struct {
		Op    string            `json:"op"`
		Path  string            `json:"path"`
		Value *skaffoldArtifact `json:"value,omitempty"`
	} `json:"patches,omitempty"`
}

func loadSkaffold(t *testing.T) []skaffoldConfig {
	t.Helper()
	data, err := os.ReadFile(repoPath("skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var configs []skaffoldConfig
	reader := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var c skaffoldConfig
		if err := yaml.UnmarshalStrict(doc, &c); err != nil {
			t.Fatalf("skaffold.yaml: %v", err)
		}
		configs = append(configs, c)
	}
	return configs
}

// imageKey is how skaffold names an image in its templates: IMAGE_REPO_<key>.
func imageKey(image string) string {
	return regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(image, "_")
}

func TestSkaffold(t *testing.T) {
	configs := loadSkaffold(t)
	var (
		artifacts      []skaffoldArtifact
		releases       []skaffoldRelease
		kustomizePaths []string
		forwards       []skaffoldForward
		kindFound      bool
	)
	for _, c := range configs {
		if !strings.HasPrefix(c.APIVersion, "skaffold/v4beta") || c.Kind != "Config" {
			t.Errorf("config %s: apiVersion %q kind %q, want skaffold/v4beta* Config", c.Metadata.Name, c.APIVersion, c.Kind)
		}
		if c.Build != nil {
			artifacts = append(artifacts, c.Build.Artifacts...)
		}
		if c.Manifests != nil && c.Manifests.Kustomize != nil {
			kustomizePaths = append(kustomizePaths, c.Manifests.Kustomize.Paths...)
		}
		if c.Deploy != nil && c.Deploy.Helm != nil {
			releases = append(releases, c.Deploy.Helm.Releases...)
		}
		forwards = append(forwards, c.PortForward...)
		for _, p := range c.Profiles {
			for _, patch := range p.Patches {
				if patch.Value != nil {
					artifacts = append(artifacts, *patch.Value)
				}
			}
			if p.Name == "kind" {
				kindFound = true
				if p.Build == nil || p.Build.Local == nil || p.Build.Local.Push == nil || *p.Build.Local.Push {
					t.Error("profile kind must build with local.push: false (images are loaded into kind)")
				}
			}
		}
	}
	if !kindFound {
		t.Error("no kind profile")
	}

	// Every image is built from the repository root with its service's Dockerfile, and
	// every service with a Dockerfile has an image.
	built := map[string]bool{}
	for _, a := range artifacts {
		if a.Context != "." || a.Docker == nil {
			t.Errorf("artifact %s: context %q docker %v, want the repository root and a Dockerfile", a.Image, a.Context, a.Docker)
			continue
		}
		if _, err := os.Stat(repoPath(a.Context, a.Docker.Dockerfile)); err != nil {
			t.Errorf("artifact %s: %v", a.Image, err)
		}
		service := strings.TrimPrefix(a.Image, "event-aggregator/")
		if a.Docker.Dockerfile != filepath.Join("services", service, "Dockerfile") {
			t.Errorf("artifact %s builds %s", a.Image, a.Docker.Dockerfile)
		}
		built[service] = true
	}
	dockerfiles, _ := filepath.Glob(repoPath("services", "*", "Dockerfile"))
	for _, f := range dockerfiles {
		if s := filepath.Base(filepath.Dir(f)); !built[s] {
			t.Errorf("services/%s/Dockerfile is built by no skaffold artifact", s)
		}
	}

	for _, p := range kustomizePaths {
		if _, err := os.Stat(repoPath(p, "kustomization.yaml")); err != nil {
			t.Errorf("kustomize path %s: %v", p, err)
		}
	}
	if len(kustomizePaths) == 0 {
		t.Error("skaffold deploys no kustomization")
	}

	// The chart release: the chart and values exist, every chart component gets the image
	// skaffold built, and the port-forwarded Services are the ones the chart renders.
	if len(releases) != 1 {
		t.Fatalf("%d helm releases, want 1", len(releases))
	}
	rel := releases[0]
	if _, err := os.Stat(repoPath(rel.ChartPath, "Chart.yaml")); err != nil {
		t.Errorf("chartPath: %v", err)
	}
	for _, f := range rel.ValuesFiles {
		if _, err := os.Stat(repoPath(f)); err != nil {
			t.Errorf("valuesFiles: %v", err)
		}
	}
	values := readYAML(t, repoPath(rel.ChartPath, "values.yaml"))
	for key := range rel.SetValueTemplates {
		if _, ok := lookupKey(values, key); !ok {
			t.Errorf("setValueTemplates %s: no such value in the chart", key)
		}
	}
	for _, comp := range components {
		image := "event-aggregator/" + comp.name
		if !built[comp.name] {
			t.Errorf("no artifact %s", image)
		}
		for key, want := range map[string]string{
			comp.name + ".image.repository": "{{.IMAGE_REPO_" + imageKey(image) + "}}",
			comp.name + ".image.tag":        "{{.IMAGE_TAG_" + imageKey(image) + "}}",
		} {
			if got := rel.SetValueTemplates[key]; got != want {
				t.Errorf("setValueTemplates %s = %q, want %q", key, got, want)
			}
		}
	}

	var valuesArgs []string
	for _, f := range rel.ValuesFiles {
		valuesArgs = append(valuesArgs, "-f", f)
	}
	out, err := run(t, time.Minute, repoRoot, helm(t), append([]string{"template", rel.Name, rel.ChartPath, "--namespace", rel.Namespace, "--kube-version", kubeVersion}, valuesArgs...)...)
	if err != nil {
		t.Fatal(err)
	}
	chart := decodeAll(t, out, "helm template "+rel.Name)
	infra := []object{}
	for _, p := range kustomizePaths {
		infra = append(infra, kustomize(t, p)...)
	}
	for _, f := range forwards {
		if f.ResourceType != "service" {
			t.Errorf("portForward %s: type %s, want service", f.ResourceName, f.ResourceType)
			continue
		}
		objs := chart
		if f.Namespace != rel.Namespace {
			t.Errorf("portForward %s: namespace %s, want %s", f.ResourceName, f.Namespace, rel.Namespace)
		}
		if byName[corev1.Service](objs, f.ResourceName) == nil {
			objs = infra
		}
		if !hasServicePort(objs, f.ResourceName, f.Port) {
			t.Errorf("portForward %s:%d: no such Service port in the chart or k8s/", f.ResourceName, f.Port)
		}
	}
	forwarded := map[string]int32{}
	for _, f := range forwards {
		forwarded[f.ResourceName] = f.LocalPort
	}
	for svc, local := range map[string]int32{
		rel.Name + "-ingest": port(t, components[0].addr),
		rel.Name + "-query":  port(t, components[2].addr),
		"jaeger":             16686,
	} {
		if forwarded[svc] != local {
			t.Errorf("portForward of %s to localhost:%d missing (have %v)", svc, local, forwarded)
		}
	}
}
