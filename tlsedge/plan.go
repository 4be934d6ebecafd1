package tlsedge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/admin"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// What a reload would do, asked before doing it (`tlsedge reload
// --dry-run`, `tlsedge check --diff`), and explain against the running
// instance. Both read the running snapshot and change nothing.

// Plan validates and compiles cfg as a reload would, without applying
// it, and returns what would change from the running configuration. The
// backends it would remove carry the number of sticky sessions pinned to
// them that were seen recently. A configuration a reload would refuse
// returns the reason, as Reload would.
func (s *Server) Plan(cfg *config.Config) (config.Diff, error) {
	if err := cfg.Validate(); err != nil {
		return config.Diff{}, err
	}
	running := s.snap.Load()
	// Compiled against a registry of its own, so that the dry run leaves
	// no trace in the live one; closed at once, it has never dialled.
	snap, err := compile(cfg, compileDeps{log: s.opts.Log, registry: upstream.NewRegistry(), stickyKeys: offlineStickyKeys})
	if err != nil {
		return config.Diff{}, err
	}
	snap.closePools()
	d := config.Compare(running.cfg, cfg)
	now := time.Now()
	for i := range d.Backends {
		set := &d.Backends[i]
		p := running.poolOf(set.Owner)
		if p == nil {
			continue
		}
		for j := range set.Removed {
			if b := p.Backend(set.Removed[j].ID); b != nil {
				set.Removed[j].StickySessions, _ = b.StickySessions(now, stickyWindow)
			}
		}
	}
	return d, nil
}

// poolOf finds the pool of a config.BackendSet owner ("app NAME" or
// "tcp NAME").
func (snap *snapshot) poolOf(owner string) *upstream.Pool {
	kind, name, _ := strings.Cut(owner, " ")
	switch kind {
	case "app":
		for _, h := range snap.apps {
			if h.cfg.Name == name {
				return h.pool
			}
		}
	case "tcp":
		for _, t := range snap.tcpServices {
			if t.cfg.Name == name {
				return t.pool
			}
		}
	}
	return nil
}

// Plan answers POST /api/plan: the configuration in body (YAML, as
// `tlsedge check` prints it), or with an empty body the instance's own
// configuration read again, compared with the running one.
func (a *adminSource) Plan(_ context.Context, body []byte) (admin.Plan, error) {
	var (
		cfg *config.Config
		err error
	)
	if len(bytes.TrimSpace(body)) == 0 {
		if a.reread == nil {
			return admin.Plan{}, errors.New("this server cannot read its configuration again")
		}
		cfg, err = a.reread()
	} else if cfg, err = config.Parse(body); err == nil {
		cfg.Normalize(a.s.cfg.StateDir)
	}
	if err != nil {
		return admin.Plan{}, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	d, err := a.s.Plan(cfg)
	if err != nil {
		return admin.Plan{}, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	return admin.Plan{Changes: d, Lines: d.Lines(), ConfigHash: configHash(cfg)}, nil
}

// Explain answers POST /api/explain with Server.Explain.
func (a *adminSource) Explain(_ context.Context, q admin.ExplainRequest) ([]string, error) {
	r, err := q.Request()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	return a.s.Explain(r)
}
