// Package processors holds the ingestor's processors: reading_to_point, which maps a
// stage-2 reading message to one InfluxDB line-protocol point.
package processors
