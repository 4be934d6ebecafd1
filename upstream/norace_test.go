//go:build !race

package upstream

// raceEnabled: the race detector changes allocation counts and timings.
const raceEnabled = false
