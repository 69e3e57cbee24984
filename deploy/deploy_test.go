// Package deploy holds the monitoring files operators deploy next to the ingestor; its tests
// check that they parse and that every expression names a metric the ingestor serves.
package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// engineMetrics are the engine's own metrics the dashboard and the rules use (Benthos v4.60.0
// registers them in internal/component: input, output, processor); `up` is Prometheus' own.
var engineMetrics = []string{
	"up", "input_received", "input_connection_lost", "output_sent", "output_error",
	"output_connection_lost", "output_connection_failed", "processor_error",
}

// documentedMetrics reads the metric names from the README's "Metrics" table, the documented
// interface of the project's own metrics.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Metrics\n")
	if !ok {
		t.Fatal(`README.md has no "## Metrics" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	if len(names) < 10 {
		t.Fatalf("found %d metrics in the README's table, want the whole table: %v", len(names), names)
	}
	return names
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGroupings = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promOffsets   = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	promNumbers   = regexp.MustCompile(`\b\d+(?:\.\d+)?(?:e\d+)?\b`)
	promIdents    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords  = []string{"and", "or", "unless", "bool", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression selects: the identifiers left once
// strings, label matchers, ranges, groupings, offsets and numbers are removed, that are neither
// keywords nor function calls.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGroupings.ReplaceAllString(s, " ")
	s = promOffsets.ReplaceAllString(s, " ")
	s = promNumbers.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promIdents.FindAllStringSubmatch(s, -1) {
		if m[1] != "" || slices.Contains(promKeywords, m[0]) {
			continue // a function call, or a keyword
		}
		names = append(names, m[0])
	}
	return names
}

func TestMetricNamesOfAnExpression(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le) (rate(iot_store_delay_seconds_bucket{instance=~"$instance"}[5m]))) / 1e9 ` +
		`and on (job, instance) (influxdb_up == 0 or error_topic_up offset 15m) unless deriv(sum by (topic) (kafka_consumer_lag)[10m:1m]) > 0`)
	want := []string{"iot_store_delay_seconds_bucket", "influxdb_up", "error_topic_up", "kafka_consumer_lag"}
	if !slices.Equal(got, want) {
		t.Fatalf("metricNames = %v, want %v", got, want)
	}
}

// known is every name an expression may use: the documented and engine metrics, with the
// series suffixes of histograms and summaries.
func known(t *testing.T) map[string]bool {
	k := map[string]bool{}
	for _, n := range append(documentedMetrics(t), engineMetrics...) {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			k[n+suffix] = true
		}
	}
	return k
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int                      `json:"id"`
			Title   string                   `json:"title"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json is not valid JSON: %v", err)
	}
	names := known(t)
	check := func(where, expr string) {
		t.Helper()
		used := metricNames(expr)
		if len(used) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range used {
			if !names[n] {
				t.Errorf("%s: %q uses %s, which is neither in the README's metrics table nor an engine metric", where, expr, n)
			}
		}
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at (%d, %d)", other, p.Title, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
	}
	for _, v := range dash.Templating.List {
		if strings.HasPrefix(v.Query, "label_values(") {
			metric, _, _ := strings.Cut(strings.TrimPrefix(v.Query, "label_values("), ",")
			check("variable "+v.Name, metric)
		}
	}
	// The series issue 15 asks the dashboard to show.
	var all []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			all = append(all, metricNames(tg.Expr)...)
		}
	}
	for _, want := range []string{"kafka_consumer_lag", "ingestor_ready", "influxdb_up", "error_topic_up",
		"kafka_partition_stalled_seconds", "kafka_offset_resets", "iot_store_delay_seconds_bucket"} {
		if !slices.Contains(all, want) {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// alertExprs reads each rule's expr from the rules file: a one-line `expr: ...` or a block
// `expr: |` of the more indented lines below it.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	exprs := map[string]string{}
	alert := ""
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(l, "- alert: "):
			alert = strings.TrimPrefix(l, "- alert: ")
		case l == "expr: |":
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			var block []string
			for i+1 < len(lines) && len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent {
				i++
				block = append(block, strings.TrimSpace(lines[i]))
			}
			exprs[alert] = strings.Join(block, " ")
		case strings.HasPrefix(l, "expr: "):
			exprs[alert] = strings.TrimPrefix(l, "expr: ")
		}
	}
	return exprs
}

func TestAlertRulesUseServedMetrics(t *testing.T) {
	exprs := alertExprs(t)
	raw, _ := os.ReadFile("prometheus-alerts.yml")
	if n := strings.Count(string(raw), "- alert: "); n != len(exprs) || n == 0 {
		t.Fatalf("read %d exprs for %d rules", len(exprs), n)
	}
	names := known(t)
	alerts := make([]string, 0, len(exprs))
	for a := range exprs {
		alerts = append(alerts, a)
	}
	sort.Strings(alerts)
	for _, a := range alerts {
		used := metricNames(exprs[a])
		if len(used) == 0 {
			t.Errorf("%s: %q selects no metric", a, exprs[a])
		}
		for _, n := range used {
			if !names[n] {
				t.Errorf("%s: %q uses %s, which is neither in the README's metrics table nor an engine metric", a, exprs[a], n)
			}
		}
	}
	// Each rule of issue 15 exists, on the metric it is defined by.
	for alert, metric := range map[string]string{
		"IngestorDown": "up", "IngestorNotReady": "ingestor_ready", "IngestorInfluxDBDown": "influxdb_up",
		"IngestorInfluxDBWritesFailing": "influxdb_write_retries", "IngestorErrorTopicDown": "error_topic_up",
		"IngestorPartitionStalled": "kafka_partition_stalled_seconds", "IngestorOffsetReset": "kafka_offset_resets",
		"IngestorConsumerLagGrowing": "kafka_consumer_lag",
	} {
		if !slices.Contains(metricNames(exprs[alert]), metric) {
			t.Errorf("rule %s missing or not on %s: %q", alert, metric, exprs[alert])
		}
	}
}
