// Package kafka is the kafka_franz input: a Kafka consumer (a consumer-group member, or a
// reader of explicit partitions) that commits an offset only once every record up to it has
// been acknowledged downstream.
//
// One file per concern:
//   - spec.go: the config spec (fields, docs, lint) and config.go: the config parsed into a
//     plain struct, checked without a broker;
//   - input.go: the client's lifecycle (Connect, ReadBatch, Close) and its health check;
//   - group.go: polling and the back-pressure gate, revokes and commits;
//   - partition.go: the consumer of one partition, which cuts batches, with checkpointer.go,
//     which tracks them until they are acknowledged;
//   - message.go: a record as a message (metadata, headers) and rebuilt for redelivery;
//   - explicit.go: explicit partitions (topic:0-5); backfill.go: start and end bounds;
//     lag.go: the lag, stall and offset-reset instruments.
package kafka
