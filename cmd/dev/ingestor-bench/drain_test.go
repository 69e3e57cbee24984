package main

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSelectWholeRuns(t *testing.T) {
	got, err := selectWholeRuns("high-volume, batch,telegraf")
	if err != nil {
		t.Fatal(err)
	}
	// Run order, not the order asked: telegraf before the ingestor runs it is compared with.
	want := []string{"telegraf", "batch100", "batch500", "batch1000", "batch5000", "batch10000", "high-volume"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("selectWholeRuns = %v, want %v", got, want)
	}
	if all, _ := selectWholeRuns("all"); !reflect.DeepEqual(all, wholeRunOrder) {
		t.Errorf("all = %v, want %v", all, wholeRunOrder)
	}
	got, err = selectWholeRuns("high-volume@base,shipped,high-volume,shipped@base")
	if want := []string{"shipped", "shipped@base", "high-volume", "high-volume@base"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("selectWholeRuns with base runs = %v, %v, want %v", got, err, want)
	}
	if _, err := selectWholeRuns("telegraf@base"); err == nil {
		t.Error("telegraf@base accepted: only the ingestor has a base build")
	}
	if _, err := selectWholeRuns("raw,telegraph"); err == nil {
		t.Error("a misspelt run was accepted")
	}
}

func TestInRounds(t *testing.T) {
	got := inRounds([]string{"raw5000", "telegraf", "shipped", "shipped@base", "high-volume"}, 3)
	// The references once, then each round; in the second a run and its base swap.
	want := []string{"raw5000", "telegraf",
		"shipped", "shipped@base", "high-volume",
		"shipped@base", "shipped", "high-volume",
		"shipped", "shipped@base", "high-volume"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("inRounds = %v, want %v", got, want)
	}
	if got := inRounds([]string{"shipped"}, 0); !reflect.DeepEqual(got, []string{"shipped"}) {
		t.Errorf("inRounds with 0 rounds = %v, want one round", got)
	}
}

func TestWholePartitions(t *testing.T) {
	got, err := wholePartitions(map[string]bool{"raw": true, "whole12": true, "whole6": true, "whole48": true})
	if err != nil || !reflect.DeepEqual(got, []int{6, 12, 48}) {
		t.Errorf("wholePartitions = %v, %v; want [6 12 48]", got, err)
	}
	if _, err := wholePartitions(map[string]bool{"wholesix": true}); err == nil {
		t.Error("wholesix was accepted")
	}
}

func TestWholeResultRates(t *testing.T) {
	r := wholeResult{messages: 1000, want: 2000, stored: 2000, took: 4 * time.Second, first: 2 * time.Second, cpu: 3 * time.Second}
	if r.rate() != 250 || r.afterFirst() != 500 || r.cpuPerMillion() != 3000 {
		t.Errorf("rate %v, after first %v, CPU per million %v; want 250, 500, 3000", r.rate(), r.afterFirst(), r.cpuPerMillion())
	}
	// An incomplete run counts only the share stored.
	r.stored = 500
	if r.rate() != 62.5 {
		t.Errorf("rate of a quarter stored = %v, want 62.5", r.rate())
	}
}

func TestSameValue(t *testing.T) {
	n := func(s string) json.Number { return json.Number(s) }
	cases := []struct {
		a, b any
		same bool
	}{
		{n("21.5"), n("21.5"), true},
		{n("1e+17"), n("100000000000000000"), true},
		{n("21.5"), n("21.6"), false},
		{"on", "on", true},
		{"on", "off", false},
		{`[{"b":1,"a":[1,2]}]`, `[{"a":[1.0,2],"b":1}]`, true},
		{`[1,2]`, `[2,1]`, false},
		{"ligne 1\\nligne 2", "ligne 1\nligne 2", false},
		{true, true, true},
		{true, nil, false},
	}
	for _, c := range cases {
		if got := sameValue(c.a, c.b); got != c.same {
			t.Errorf("sameValue(%#v, %#v) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

func TestDropVars(t *testing.T) {
	got := dropVars([]string{"PATH=/bin", "INFLUXDB_BATCH_SIZE=5000", "GOGC=400", "HOME=/root"}, "INFLUXDB_", "GOGC")
	if !reflect.DeepEqual(got, []string{"PATH=/bin", "HOME=/root"}) {
		t.Errorf("dropVars = %v", got)
	}
}

func TestElapsedWriterPrefixesEachLine(t *testing.T) {
	var b bytes.Buffer
	w := &elapsedWriter{w: &b, start: time.Now()}
	for _, s := range []string{"one\ntw", "o\n", "three\nfour\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{"one", "two", "three", "four"}
	if len(lines) != len(want) {
		t.Fatalf("got %q", b.String())
	}
	for i, l := range lines {
		prefix, rest, ok := strings.Cut(l, "s ")
		if !ok || !strings.HasPrefix(prefix, "+0") || rest != want[i] {
			t.Errorf("line %d = %q, want +0.00Xs %s", i, l, want[i])
		}
	}
}

// A high-volume@base run with another env file writes that file's batch, not the profile's.
func TestWholeBatchOfBaseEnv(t *testing.T) {
	o := options{shippedBatch: 100, tunedBatch: 5000}
	env := t.TempDir() + "/old.env"
	if err := os.WriteFile(env, []byte("# the old profile\nINFLUXDB_BATCH_SIZE=500\nGOGC=400\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, baseEnv, want string }{
		{"high-volume", env, "5000"},
		{"high-volume@base", env, "500"},
		{"high-volume@base", "", "5000"},
		{"shipped@base", env, "100"},
		{"batch1000", env, "1000"},
	} {
		if got := wholeBatch(tc.name, o, tc.baseEnv); got != tc.want {
			t.Errorf("wholeBatch(%s, base env %q) = %s, want %s", tc.name, tc.baseEnv, got, tc.want)
		}
	}
}
