// Package inputs registers the ingestor's input plugins with the engine; importing it (as the
// ingestor's main does) makes them available to configs. Each plugin lives in a package of its
// own: kafka_franz, the Kafka consumer with contiguous per-partition checkpointing, in
// inputs/kafka.
package inputs

import (
	_ "github.com/preservarium/iot-ingestor/inputs/kafka" // kafka_franz
)
