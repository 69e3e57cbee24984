package main

import (
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// streamReady is the engine's test for GET /ready applied to the statuses of the running
// stream: at least one input and one output, and every one of them connected. The summary
// lists the input layer's components (paths under "input", "input_resources") and the output
// layer's (under "output", "output_resources") together, so they are told apart by path.
//
// Reading the statuses has the same effects as a GET /ready: the engine builds a lazily
// created resource (the fallback's error_topic) the first time it is asked about it.
func streamReady(statuses []service.ConnectionStatus) bool {
	var inputs, outputs int
	for _, s := range statuses {
		if !s.Active() {
			return false
		}
		if p := s.Path(); len(p) > 0 && strings.HasPrefix(p[0], "input") {
			inputs++
		} else {
			outputs++
		}
	}
	return inputs > 0 && outputs > 0
}
