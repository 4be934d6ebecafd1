//go:build race

package tlsedge

const raceEnabled = true
