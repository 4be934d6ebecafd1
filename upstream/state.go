package upstream

import (
	"time"

	"github.com/sirupsen/logrus"
)

// Every change of a backend's state is one log line: which backend, from
// what to what, and why. The proxy's and the health checker's log entries
// carry the app, so the line says where it was seen.

// State names of the log lines.
const (
	stateUp   = "up"
	stateDown = "down"
)

// logEjected logs b taken out of rotation by live traffic.
func logEjected(log *logrus.Entry, b *Backend, now time.Time, reason string) {
	if log == nil {
		return
	}
	until := b.DownUntil()
	log.WithFields(logrus.Fields{
		"backend": b.id, "addr": b.addr, "from": stateUp, "to": stateDown,
		"reason": reason, "retry_in": until.Sub(now).Round(time.Millisecond).String(),
	}).Warn("backend " + b.id + " " + stateUp + " -> " + stateDown)
}

// logRecovered logs b back in rotation.
func logRecovered(log *logrus.Entry, b *Backend, reason string) {
	if log == nil {
		return
	}
	log.WithFields(logrus.Fields{
		"backend": b.id, "addr": b.addr, "from": stateDown, "to": stateUp, "reason": reason,
	}).Info("backend " + b.id + " " + stateDown + " -> " + stateUp)
}
