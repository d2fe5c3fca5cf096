package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/planetkube/planetkube/internal/agent/bandwidth"
	"github.com/planetkube/planetkube/internal/agent/capture"
	"github.com/planetkube/planetkube/internal/agent/cpu"
	"github.com/planetkube/planetkube/internal/agent/memory"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/slicemetrics"
)

// targetLabels are the labels Prometheus adds to every series it scrapes
// (the target's): a query may group by them.
var targetLabels = []string{"instance", "job", "pod", "node"}

// exposedMetrics returns the metrics the manager and the node agent expose
// as their own, each with its labels, from their collectors' descriptions.
func exposedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	bw := bandwidth.NewMetrics()
	cm := cpu.NewMetrics()
	mm := memory.NewMetrics()
	collectors := append([]prometheus.Collector{
		&slicemetrics.Collector{}, &manager.UsageGatherer{},
		cm.Fixed, cm.Errors, mm.InUse, mm.Some10, mm.Resets,
	}, bw.Collectors()...)
	capt := capture.NewMetrics(nil)
	collectors = append(collectors, capt.Events, capt.Overflows, capt.LostFlows, capt.Resyncs, capt.Dumps, capt.OpenFlows, capt.Records)
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 64)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read %s", d)
			}
			var labels []string
			if m[2] != "" {
				labels = strings.Split(m[2], ",")
			}
			out[m[1]] = labels
		}
	}
	return out
}

// TestDashboardQueriesNameExposedMetrics reads every query of the chart's
// Grafana dashboard: each metric it names is one the binaries expose, each
// label it matches is one that metric carries, each label it groups by is
// one of its metrics' or a scrape target's.
func TestDashboardQueriesNameExposedMetrics(t *testing.T) {
	exposed := exposedMetrics(t)
	b, err := os.ReadFile(filepath.Join(chart, "dashboards", "planetkube.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil || dash.UID == "" {
		t.Fatalf("the dashboard is not a Grafana dashboard: %v", err)
	}
	selector := regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	grouping := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	used := map[string]bool{}
	var queries int
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			// Label values and the contents of the grouping clauses are
			// not metric names.
			expr := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(q.Expr, `""`)
			groups := grouping.FindAllStringSubmatch(expr, -1)
			bare := grouping.ReplaceAllString(expr, "")
			bare = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(bare, "")
			var labels []string
			var named int
			for _, m := range selector.FindAllStringSubmatch(bare, -1) {
				name := m[1]
				if isPromQLWord(name) {
					continue
				}
				want, ok := exposed[name]
				if !ok {
					t.Errorf("%s: %q names %s, which neither the manager nor the agent exposes", p.Title, q.Expr, name)
					continue
				}
				named++
				used[name] = true
				labels = append(labels, want...)
				for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
					if !slices.Contains(want, lm[1]) {
						t.Errorf("%s: %q matches label %s, which %s does not carry (it has %v)", p.Title, q.Expr, lm[1], name, want)
					}
				}
			}
			if named == 0 {
				t.Errorf("%s: %q names no metric", p.Title, q.Expr)
			}
			for _, g := range groups {
				for _, l := range strings.Split(g[1], ",") {
					if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
						t.Errorf("%s: %q groups by %s, which none of its metrics carries", p.Title, q.Expr, l)
					}
				}
			}
		}
	}
	if queries < 10 {
		t.Fatalf("only %d queries read: the dashboard's layout is not what this test reads", queries)
	}
	// What the issue asks the dashboard to show.
	for _, m := range []string{"planetkube_slice_ready", "planetkube_slice_slivers", "planetkube_slice_nodes_not_running", "planetkube_tickets",
		"planetkube_authority_feed_synced", "planetkube_slice_cpu_seconds_total", "planetkube_slice_bytes_today", "planetkube_site_cpu_seconds_given_total",
		"planetkube_agent_conntrack_records_emitted_total", "planetkube_agent_cpu_weight_fixes_total", "planetkube_agent_sliver_resets_total"} {
		if !used[m] {
			t.Errorf("the dashboard shows nothing of %s", m)
		}
	}
}

// isPromQLWord says whether a word of a query is PromQL's own (a function,
// an operator, a keyword), not a metric.
func isPromQLWord(w string) bool {
	switch w {
	case "sum", "min", "max", "avg", "count", "topk", "bottomk", "rate", "increase", "irate", "delta", "by", "without",
		"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "bool", "abs", "clamp_min", "clamp_max",
		"histogram_quantile", "label_replace", "vector", "time", "sort", "sort_desc":
		return true
	}
	return false
}

// TestDashboardConfigMap: off by default; on, a ConfigMap with the sidecar's
// label holding the dashboard file as it is.
func TestDashboardConfigMap(t *testing.T) {
	if find(render(t), "ConfigMap", "planetkube-grafana-dashboard") != nil {
		t.Fatal("the dashboard's ConfigMap is rendered by default")
	}
	objs := render(t, "--set", "metrics.grafanaDashboard.enabled=true", "--set", "metrics.grafanaDashboard.namespace=monitoring",
		"--set", "metrics.grafanaDashboard.annotations.grafana_folder=PlanetKube")
	cm := find(objs, "ConfigMap", "planetkube-grafana-dashboard")
	if cm == nil {
		t.Fatal("no ConfigMap planetkube-grafana-dashboard")
	}
	if str(cm, "metadata", "namespace") != "monitoring" || str(cm, "metadata", "labels", "grafana_dashboard") != "1" ||
		str(cm, "metadata", "annotations", "grafana_folder") != "PlanetKube" {
		t.Errorf("the ConfigMap's metadata: %v", cm["metadata"])
	}
	file, err := os.ReadFile(filepath.Join(chart, "dashboards", "planetkube.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(file, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(str(cm, "data", "planetkube.json")), &got); err != nil {
		t.Fatalf("the ConfigMap's dashboard is not JSON: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("the ConfigMap's dashboard is not dashboards/planetkube.json")
	}
}
