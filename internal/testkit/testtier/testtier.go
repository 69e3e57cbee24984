// Package testtier separates the two tiers of the test suite. The unit tier (`go test -short
// ./...`, `scripts/test.sh -short`) needs nothing but Go and runs in well under a minute; the
// full run (`go test ./...`, `scripts/test.sh`, CI) adds every test that starts a server (a
// real InfluxDB, the embedded Kafka broker), runs kcat or drives the built binary.
//
// Every helper that starts such a thing calls Integration first, so the choice is made in one
// place and not test by test. Outside -short nothing is skipped: a test whose server is missing
// fails, saying how to get it, so a full run can never pass by silently testing less.
package testtier

import "testing"

// Integration marks t as a test of the full tier that needs what `needs` names (e.g. "a real
// InfluxDB 1.8"). Under -short it skips t with that reason; otherwise it returns and the caller
// starts what it needs, failing the test if it cannot.
func Integration(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test: needs %s; skipped by -short (the unit tier), run without -short to include it", needs)
	}
}
