package pyjson

import (
	"math"
	"strconv"
	"testing"
)

func TestAppendFloatIsPythonRepr(t *testing.T) {
	// repr() of each float in CPython 3.
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0.1, "0.1"}, {1e22, "1e+22"}, {1e16, "1e+16"}, {9999999999999998.0, "9999999999999998.0"},
		{1e-4, "0.0001"}, {1.234e-7, "1.234e-07"}, {5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"}, {100.0, "100.0"}, {0.5, "0.5"},
		{123.456, "123.456"}, {2.5e-05, "2.5e-05"}, {-1e16, "-1e+16"}, {1e15, "1000000000000000.0"},
		{48.0, "48.0"}, {-3.5, "-3.5"}, {0, "0.0"},
	} {
		if got := string(AppendFloat(nil, tc.f)); got != tc.want {
			t.Errorf("AppendFloat(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

// FuzzAppendFloat: Python's repr must read back as the same float, always
// carry a fraction or an exponent, and never look like an integer literal.
func FuzzAppendFloat(f *testing.F) {
	for _, x := range []float64{0, 21.5, 48, 1e16, 1e-5, 123456789012345.6, -0.0, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f.Add(math.Float64bits(x))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		x := math.Float64frombits(bits)
		s := string(AppendFloat(nil, x))
		if math.IsNaN(x) || math.IsInf(x, 0) {
			if s != "NaN" && s != "Infinity" && s != "-Infinity" {
				t.Fatalf("AppendFloat(%v) = %q", x, s)
			}
			return
		}
		y, err := strconv.ParseFloat(s, 64)
		if err != nil || y != x || math.Signbit(y) != math.Signbit(x) {
			t.Fatalf("AppendFloat(%v) = %q reads back as %v (%v)", x, s, y, err)
		}
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			t.Fatalf("AppendFloat(%v) = %q looks like an integer literal", x, s)
		}
	})
}
