package kafkaclient

import (
	"fmt"
	"sync"
	"time"

	"github.com/preservarium/iot-ingestor/internal/backoff"
)

// RepeatPolicy spaces the log lines of a cause that keeps repeating (an unreachable broker
// fails every fetch, heartbeat and commit): the first line at once, then one summary after 5 s,
// 10 s, 20 s ... up to one a minute.
var RepeatPolicy = backoff.Policy{Initial: 5 * time.Second, Max: time.Minute}

// Repeats decides when a repeating cause is logged again. The zero value uses RepeatPolicy.
type Repeats struct {
	Policy *backoff.Policy // nil: RepeatPolicy

	mu      sync.Mutex
	cause   string
	since   time.Time // first occurrence of the cause in this run of repeats
	skipped int       // occurrences not logged since the last line
	logged  int       // lines logged for the cause
	next    time.Time // when the cause may be logged again
}

// Note records one occurrence of cause at now. It says whether to log it now and, for a
// repeated cause, how many occurrences were not logged since the last line and since when the
// cause repeats. A different cause is logged at once.
func (r *Repeats) Note(cause string, now time.Time) (log bool, skipped int, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pol := RepeatPolicy
	if r.Policy != nil {
		pol = *r.Policy
	}
	if cause != r.cause || r.since.IsZero() {
		r.cause, r.since, r.skipped, r.logged = cause, now, 0, 1
		r.next = now.Add(pol.Delay(0))
		return true, 0, now
	}
	if now.Before(r.next) {
		r.skipped++
		return false, 0, r.since
	}
	skipped = r.skipped
	r.skipped = 0
	r.next = now.Add(pol.Delay(r.logged))
	r.logged++
	return true, skipped, r.since
}

// Reset ends a run of repeats (the cause went away): the next occurrence is logged at once.
func (r *Repeats) Reset() {
	r.mu.Lock()
	r.cause, r.since = "", time.Time{}
	r.mu.Unlock()
}

// logCause is Log with the repeat told by cause, where line has details that change on every
// repeat (a retry count, a back-off).
func (r *Repeats) logCause(log func(string), cause, line string) {
	ok, skipped, since := r.Note(cause, time.Now())
	if !ok {
		return
	}
	log(withRepeats(line, skipped, since))
}

func withRepeats(line string, skipped int, since time.Time) string {
	if skipped > 0 {
		line += fmt.Sprintf(" (the same %d more times since %s)", skipped, since.UTC().Format(time.RFC3339))
	}
	return line
}

// Log writes line through log unless it repeats the previous line of r within its back-off; a
// repeat that is written says how often it recurred unlogged, and since when.
func (r *Repeats) Log(log func(string), line string) {
	ok, skipped, since := r.Note(line, time.Now())
	if !ok {
		return
	}
	log(withRepeats(line, skipped, since))
}
