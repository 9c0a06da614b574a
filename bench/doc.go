// Package bench holds the go test -bench suites of the hot path (hub fan-out,
// frame encoding, conflation, end to end over loopback) and the pieces the
// load generator cmd/mcbench is made of. See BENCHMARKS.md for results.
package bench
