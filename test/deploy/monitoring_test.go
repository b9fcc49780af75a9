package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// monitoringQuery is one PromQL expression of the chart's alerts or dashboard.
type monitoringQuery struct {
	where, expr string
}

// alertQueries parses files/alerts.yaml the way Prometheus loads a rule file (strict
// fields, every expression and annotation template checked) and returns its expressions.
func alertQueries(t *testing.T) []monitoringQuery {
	t.Helper()
	groups, errs := rulefmt.ParseFile(repoPath(chartDir, "files", "alerts.yaml"), false, model.UTF8Validation,
		parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, err := range errs {
		t.Errorf("files/alerts.yaml: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	var out []monitoringQuery
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			out = append(out, monitoringQuery{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

// dashboardQueries returns the expressions of every panel of files/dashboard.json, with
// Grafana's interval variables replaced by a duration so that Prometheus' parser reads them.
func dashboardQueries(t *testing.T) []monitoringQuery {
	t.Helper()
	data, err := os.ReadFile(repoPath(chartDir, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("files/dashboard.json: %v", err)
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	var out []monitoringQuery
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			out = append(out, monitoringQuery{fmt.Sprintf("panel %q query %d", p.Title, i), grafana.Replace(tg.Expr)})
		}
	}
	return out
}

// queriedMetrics parses each expression with Prometheus' PromQL parser and returns the
// metric names they select, each with where it is used.
func queriedMetrics(t *testing.T, queries []monitoringQuery) map[string][]string {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	used := map[string][]string{}
	for _, q := range queries {
		expr, err := p.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
			continue
		}
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			if name == "" {
				t.Errorf("%s: a selector without a metric name: %s", q.where, vs)
			} else if !slices.Contains(used[name], q.where) {
				used[name] = append(used[name], q.where)
			}
			return nil
		})
	}
	return used
}

// TestMonitoringQueriesParse checks every alert and dashboard expression with Prometheus'
// own parsers, and the alert file with its rule file loader. Which metrics exist is checked
// against the running binaries in TestChartToProcess.
func TestMonitoringQueriesParse(t *testing.T) {
	alerts := alertQueries(t)
	want := []string{"ConsumerLagGrowing", "DeadLetteredRecords", "HTTP5xx", "Publish503", "PublishLatencyHigh", "RedisDegraded", "ReadinessFlapping"}
	for _, w := range want {
		if !slices.ContainsFunc(alerts, func(q monitoringQuery) bool { return q.where == "alert EventAggregator"+w }) {
			t.Errorf("files/alerts.yaml has no alert EventAggregator%s", w)
		}
	}
	used := queriedMetrics(t, append(alerts, dashboardQueries(t)...))
	if len(used) == 0 {
		t.Fatal("no metric used by the alerts and the dashboard")
	}
}

// exportedMetrics reads a /metrics exposition and returns the sample names it carries
// (with the _bucket, _sum and _count series of histograms and summaries).
func exportedMetrics(r io.Reader) (map[string]bool, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for name, f := range families {
		if len(f.GetMetric()) == 0 {
			continue // a vector without series yet exports nothing a query could select
		}
		out[name] = true
		switch f.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case "SUMMARY":
			out[name+"_sum"], out[name+"_count"] = true, true
		}
	}
	return out, nil
}
