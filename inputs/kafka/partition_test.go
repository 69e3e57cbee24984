package kafka

import (
	"testing"
)

// The WARN line of a held-back partition names the bound it reached, so that an operator knows
// which setting to look at: its own record or byte bound, or the input's buffer_bytes.
func TestHeldBackPartitionNamesItsBound(t *testing.T) {
	in := &franzInput{inputConfig: inputConfig{limit: 50, limitBytes: 4 << 20, bufferBytes: 8 << 20}}
	for _, c := range []struct {
		records, bytes int64
		want           string
	}{
		{50, 1000, "checkpoint_limit (50) records"},
		{10, 4 << 20, "partition_buffer_bytes (4.0 MiB) of records"},
		{10, 3000, "10 records (2.9 KiB) while the input holds buffer_bytes (8.0 MiB)"},
	} {
		p := &partitionConsumer{in: in}
		p.held.Store(c.records)
		p.heldBytes.Store(c.bytes)
		if got := p.holding(); got != c.want {
			t.Errorf("a partition holding %d records of %d bytes says %q, want %q", c.records, c.bytes, got, c.want)
		}
	}
}
