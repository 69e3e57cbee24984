// Package inputs holds the ingestor's input plugins: kafka_franz, a Kafka
// consumer-group input with contiguous per-partition checkpointing.
package inputs
