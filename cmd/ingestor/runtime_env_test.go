package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestParseMemLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"0":       0,
		"1048576": 1 << 20,
		"512B":    512,
		"64KiB":   64 << 10,
		"120MiB":  120 << 20,
		"2GiB":    2 << 30,
		"1TiB":    1 << 40,
		"off":     math.MaxInt64,
	} {
		got, err := parseMemLimit(in)
		if err != nil || got != want {
			t.Errorf("parseMemLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "120MB", "12.5MiB", "-1", "+100MiB", "MiB", "9999999TiB", "100 MiB"} {
		if _, err := parseMemLimit(in); err == nil {
			t.Errorf("parseMemLimit(%q) accepted", in)
		}
	}
}

func TestParseGOGC(t *testing.T) {
	for in, want := range map[string]int{"100": 100, "400": 400, "0": 0, "off": -1, "-1": -1, "-5": -1} {
		if got, err := parseGOGC(in); err != nil || got != want {
			t.Errorf("parseGOGC(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "1.5"} {
		if _, err := parseGOGC(in); err == nil {
			t.Errorf("parseGOGC(%q) accepted", in)
		}
	}
}

// The values reach the runtime, and a bad one is an error naming the variable.
func TestApplyRuntimeEnv(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})
	env := map[string]string{"GOGC": "321", "GOMEMLIMIT": "123MiB"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := applyRuntimeEnv(lookup); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 321 {
		t.Errorf("GC percent %d after GOGC=321", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("memory limit %d after GOMEMLIMIT=123MiB", got)
	}
	env = map[string]string{"GOMEMLIMIT": "120MB"}
	err := applyRuntimeEnv(lookup)
	if err == nil || !strings.Contains(err.Error(), "GOMEMLIMIT") {
		t.Errorf("GOMEMLIMIT=120MB: got %v, want an error naming GOMEMLIMIT", err)
	}
}
