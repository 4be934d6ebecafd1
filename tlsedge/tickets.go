package tlsedge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// ticketRotator owns the session-ticket keys of one tls.Config. Go rotates
// ticket keys itself only while the application sets none; we set them so
// that the schedule is ours (and, in a later issue, shared by a cluster).
//
// Every period a fresh key starts sealing new tickets; the previous
// ticketKeysKept-1 keys still open old tickets, so a client resumes for up
// to ticketKeysKept periods and a stolen key exposes at most that window.
type ticketRotator struct {
	cfg    *tls.Config
	period time.Duration
	log    *logrus.Entry
	keys   [][32]byte // newest first; touched only by the rotating goroutine
}

const (
	defaultTicketPeriod = 24 * time.Hour
	ticketKeysKept      = 3
)

func newTicketRotator(cfg *tls.Config, period time.Duration, log *logrus.Entry) (*ticketRotator, error) {
	if period <= 0 {
		period = defaultTicketPeriod
	}
	r := &ticketRotator{cfg: cfg, period: period, log: log}
	if err := r.rotate(); err != nil {
		return nil, err
	}
	return r, nil
}

// rotate adds a fresh key in front and forgets the oldest beyond the kept count.
func (r *ticketRotator) rotate() error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("session ticket key: %w", err)
	}
	keys := append([][32]byte{k}, r.keys...)
	if len(keys) > ticketKeysKept {
		keys = keys[:ticketKeysKept]
	}
	r.keys = keys
	r.cfg.SetSessionTicketKeys(keys)
	return nil
}

// Run rotates every period until ctx ends.
func (r *ticketRotator) Run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := r.rotate(); err != nil {
				r.log.WithError(err).Error("session ticket key rotation failed; keeping the current keys")
				continue
			}
			r.log.Debug("session ticket keys rotated")
		}
	}
}
