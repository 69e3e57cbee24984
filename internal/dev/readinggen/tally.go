package readinggen

import (
	"fmt"
	"io"
	"slices"
)

// Tally sums expectations: what a stream must leave in InfluxDB and on the
// error topic.
type Tally struct {
	Messages     int               `json:"messages"`
	Stored       int               `json:"stored"`
	Filtered     int               `json:"filtered"`
	Errors       int               `json:"errors"`
	ByErrorKind  map[string]int    `json:"by_error_kind"`
	ByBadKind    map[BadKind]int   `json:"by_bad_kind"`
	Values       int               `json:"values"`
	ValuesByType map[FieldType]int `json:"values_by_type"`
	Skipped      Skipped           `json:"skipped"`
}

// Add counts one expectation.
func (t *Tally) Add(e Expectation) {
	if t.ByErrorKind == nil {
		t.ByErrorKind = map[string]int{}
		t.ByBadKind = map[BadKind]int{}
		t.ValuesByType = map[FieldType]int{}
	}
	t.Messages++
	switch e.Outcome {
	case OutcomeStored:
		t.Stored++
	case OutcomeFiltered:
		t.Filtered++
	case OutcomeError:
		t.Errors++
		t.ByErrorKind[e.ErrorKind]++
		t.ByBadKind[e.BadKind]++
	}
	t.Values += len(e.Fields)
	for _, f := range e.Fields {
		t.ValuesByType[f.Type]++
	}
	t.Skipped.Null += e.Skipped.Null
	t.Skipped.Unpersisted += e.Skipped.Unpersisted
	t.Skipped.NonFinite += e.Skipped.NonFinite
}

// WriteText prints the tally for a person, one fact per line.
func (t *Tally) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "  stored:   %d messages, %d values (float %d, integer %d, boolean %d, string %d)\n"+
		"  filtered: %d messages (every value unpersisted, null or non-finite)\n"+
		"  skipped values: %d null, %d unpersisted, %d non-finite\n"+
		"  errors:   %d messages (decode %d, validation %d)\n",
		t.Stored, t.Values, t.ValuesByType[FieldFloat], t.ValuesByType[FieldInteger], t.ValuesByType[FieldBoolean], t.ValuesByType[FieldString],
		t.Filtered,
		t.Skipped.Null, t.Skipped.Unpersisted, t.Skipped.NonFinite,
		t.Errors, t.ByErrorKind[ErrorKindDecode], t.ByErrorKind[ErrorKindValidation])
	if err != nil {
		return err
	}
	kinds := make([]BadKind, 0, len(t.ByBadKind))
	for k := range t.ByBadKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		if _, err := fmt.Fprintf(w, "    %-26s %d\n", k, t.ByBadKind[k]); err != nil {
			return err
		}
	}
	return nil
}
