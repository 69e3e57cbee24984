package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// applyRuntimeEnv applies GOGC and GOMEMLIMIT from the environment as it is after the env files
// given with -e are loaded. The Go runtime reads both only when the process starts, so a value
// set in an env file (config/ingestor-high-volume.env sets both) would otherwise be ignored
// without a word. Values already in the process environment at start are applied again,
// unchanged.
func applyRuntimeEnv(lookup func(string) (string, bool)) error {
	if v, ok := lookup("GOGC"); ok && v != "" {
		percent, err := parseGOGC(v)
		if err != nil {
			return fmt.Errorf("environment variable GOGC=%q: %w", v, err)
		}
		debug.SetGCPercent(percent)
	}
	if v, ok := lookup("GOMEMLIMIT"); ok && v != "" {
		limit, err := parseMemLimit(v)
		if err != nil {
			return fmt.Errorf("environment variable GOMEMLIMIT=%q: %w", v, err)
		}
		debug.SetMemoryLimit(limit)
	}
	return nil
}

// parseGOGC reads GOGC as the runtime does: a percentage, or "off" (or a negative number) for
// no collection by growth.
func parseGOGC(v string) (int, error) {
	if v == "off" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf(`want a percentage such as 200, or "off"`)
	}
	return max(n, -1), nil
}

// parseMemLimit reads GOMEMLIMIT as the runtime does: bytes with an optional B, KiB, MiB, GiB
// or TiB suffix, or "off" for no limit.
func parseMemLimit(v string) (int64, error) {
	if v == "off" {
		return math.MaxInt64, nil
	}
	units := []struct {
		suffix string
		scale  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	scale := int64(1)
	num := v
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			num, scale = strings.TrimSuffix(v, u.suffix), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || num == "" || num[0] < '0' || num[0] > '9' || n > math.MaxInt64/scale {
		return 0, fmt.Errorf(`want a size in bytes such as 150MiB (units B, KiB, MiB, GiB, TiB), or "off"`)
	}
	return n * scale, nil
}
