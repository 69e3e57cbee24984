package kafkaclient

import (
	"testing"
	"time"
)

func TestRepeatsSpacesARepeatedCause(t *testing.T) {
	var r Repeats
	t0 := time.Unix(1000, 0)
	var lines []int // seconds after t0 at which a line is logged
	skippedTotal := 0
	for s := 0; s <= 40; s++ { // one failure a second for 40 s, as the poll loop had
		if log, skipped, since := r.Note("dial refused", t0.Add(time.Duration(s)*time.Second)); log {
			lines = append(lines, s)
			skippedTotal += skipped
			if !since.Equal(t0) {
				t.Errorf("line at %ds: since %v, want the first occurrence %v", s, since, t0)
			}
		}
	}
	want := []int{0, 5, 15, 35} // then 5 s, 10 s, 20 s apart
	if len(lines) != len(want) {
		t.Fatalf("logged at %v s, want %v", lines, want)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Fatalf("logged at %v s, want %v", lines, want)
		}
	}
	if skippedTotal != 41-len(lines)-5 { // the 5 after the last line are not yet summarised
		t.Errorf("summaries counted %d skipped occurrences, want %d", skippedTotal, 41-len(lines)-5)
	}
	if log, _, _ := r.Note("another cause", t0.Add(41*time.Second)); !log {
		t.Error("a new cause was not logged at once")
	}
	r.Reset()
	if log, _, _ := r.Note("another cause", t0.Add(42*time.Second)); !log {
		t.Error("after Reset the cause was not logged at once")
	}
}
