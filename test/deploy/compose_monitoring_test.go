package deploy

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestComposeMonitoring checks the optional monitoring profile: Prometheus scrapes each
// binary's service on its port and loads the chart's alert file, Grafana provisions the
// chart's dashboard, and neither starts without the profile.
func TestComposeMonitoring(t *testing.T) {
	p := loadCompose(t)
	mounts := func(name string) map[string]string {
		s := service(t, p, name)
		if !slices.Equal(s.Profiles, []string{"monitoring"}) {
			t.Errorf("%s: profiles %v, want [monitoring]", name, s.Profiles)
		}
		m := map[string]string{}
		for _, v := range s.Volumes {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: volume source %s: %v", name, v.Source, err)
			}
			m[v.Target] = strings.TrimPrefix(v.Source, repoRoot+"/")
		}
		return m
	}
	if got := mounts("prometheus")["/etc/prometheus/alerts.yaml"]; got != chartDir+"/files/alerts.yaml" {
		t.Errorf("prometheus mounts %q as its rule file, want the chart's files/alerts.yaml", got)
	}
	if got := mounts("grafana")["/var/lib/grafana/dashboards/event-aggregator.json"]; got != chartDir+"/files/dashboard.json" {
		t.Errorf("grafana mounts %q as its dashboard, want the chart's files/dashboard.json", got)
	}

	cfg, ok := p.Configs["prometheus-config"]
	if !ok {
		t.Fatal("no config prometheus-config")
	}
	var prom struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(cfg.Content), &prom); err != nil {
		t.Fatalf("prometheus-config: %v", err)
	}
	if !slices.Contains(prom.RuleFiles, "/etc/prometheus/alerts.yaml") {
		t.Errorf("prometheus rule_files %v, want the mounted alerts", prom.RuleFiles)
	}
	targets := map[string][]string{}
	for _, sc := range prom.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], s.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets[sc.JobName] = append(targets[sc.JobName], fmt.Sprintf("%s:%d", n, d.Port))
			}
		}
	}
	for _, comp := range components {
		want := fmt.Sprintf("%s:%d", comp.name, port(t, comp.addr))
		if !slices.Contains(targets[comp.name], want) {
			t.Errorf("prometheus job %s scrapes %v, want %s", comp.name, targets[comp.name], want)
		}
		service(t, p, comp.name)
	}
}
