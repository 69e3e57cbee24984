// Package batchpolicy parses a component's `batching` field and rejects what the engine
// silently accepts: a negative count or byte size (taken as "no limit") and a period that is
// not a duration (found only when the first batcher is built).
package batchpolicy

import (
	"fmt"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Field parses the batch policy at field and checks its values.
func Field(conf *service.ParsedConfig, field string) (service.BatchPolicy, error) {
	pol, err := conf.FieldBatchPolicy(field)
	if err != nil {
		return pol, err
	}
	if pol.Count < 0 {
		return pol, fmt.Errorf("field %s.count: must be 0 (no count limit) or more, got %d", field, pol.Count)
	}
	if pol.ByteSize < 0 {
		return pol, fmt.Errorf("field %s.byte_size: must be 0 (no size limit) or more, got %d", field, pol.ByteSize)
	}
	if pol.Period != "" {
		d, err := time.ParseDuration(pol.Period)
		if err != nil {
			return pol, fmt.Errorf("field %s.period: %q is not a duration such as 500ms or 5s", field, pol.Period)
		}
		if d < 0 {
			return pol, fmt.Errorf("field %s.period: must not be negative, got %s", field, pol.Period)
		}
	}
	return pol, nil
}
