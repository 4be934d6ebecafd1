//go:build !race

package tlsedge

const raceEnabled = false
