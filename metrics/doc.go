// Package metrics holds the ingestor's metrics exporter: prometheus, serving
// /metrics on the engine's HTTP server.
package metrics
