// Package outputs holds the ingestor's output plugins: influxdb_v2, which writes
// line protocol to InfluxDB and fails exactly the rejected messages, and
// kafka_franz, which produces to Kafka (the error topic).
package outputs
