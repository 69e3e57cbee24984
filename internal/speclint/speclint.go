// Package speclint builds the lint rules of the project's component specs: checks of values
// that the engine's own schema check lets through (a duration without a unit, a negative
// count), so that `ingestor lint` catches them instead of the start.
//
// A rule is a Bloblang mapping that the engine runs on the component's fields after
// environment substitution and that returns the list of problems found. Each check here is
// one element of that list: a string when the check fails, nothing otherwise. A field that is
// absent is not checked (its default applies), nor is a value that is not a string where a
// string is checked (the schema check reports it).
package speclint

import (
	"fmt"
	"strings"

	// The rules call Bloblang methods of the pure components (parse_duration, re_match, format):
	// they must be registered before a spec using a rule is, or the rule does not parse.
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
)

// Rule is the lint rule made of the checks, for ConfigSpec.LintRule.
func Rule(checks ...string) string {
	return "root = [\n  " + strings.Join(checks, ",\n  ") + "\n]"
}

// Durations checks that each field, when set and not empty, is a duration with a unit
// ("500ms", "1s"): empty is how an optional duration says "none".
func Durations(paths ...string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, fmt.Sprintf(
			`if this.%[1]s.type() == "string" && this.%[1]s != "" && this.%[1]s.parse_duration().catch(null) == null { "field %[1]s: %%q is not a duration with a unit, such as 500ms, 10s or 1m".format(this.%[1]s) }`, p))
	}
	return out
}

// NonNegative checks that each numeric field, when set, is zero or more.
func NonNegative(paths ...string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, fmt.Sprintf(
			`if this.%[1]s.type() == "number" && this.%[1]s < 0 { "field %[1]s: must not be negative, got %%v".format(this.%[1]s) }`, p))
	}
	return out
}

// Positive checks that each numeric field, when set, is more than zero.
func Positive(paths ...string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, fmt.Sprintf(
			`if this.%[1]s.type() == "number" && this.%[1]s <= 0 { "field %[1]s: must be more than 0, got %%v".format(this.%[1]s) }`, p))
	}
	return out
}

// PositiveBytes checks that each byte-size field, when set, is a size of more than zero bytes
// with an optional unit ("4MiB", "512KB", "100"), as the components parse it.
func PositiveBytes(paths ...string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, fmt.Sprintf(
			`if (this.%[1]s.type() == "number" && this.%[1]s <= 0) || (this.%[1]s.type() == "string" && (!this.%[1]s.re_match("(?i)^\\s*[0-9]*\\.?[0-9]+\\s*([kmgtpe]i?b?|b)?\\s*$") || this.%[1]s.re_match("^\\s*[0.]+\\s*[A-Za-z]*\\s*$"))) { "field %[1]s: %%v is not a byte size of more than 0, such as 4MiB".format(this.%[1]s) }`, p))
	}
	return out
}

// Batching checks a batching policy block at path: its count, byte size and period.
func Batching(path string) []string {
	out := NonNegative(path+".count", path+".byte_size")
	return append(out, Durations(path+".period")...)
}
