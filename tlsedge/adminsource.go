package tlsedge

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/admin"
	"github.com/tlsedge/tlsedge/cluster"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// The server as the admin handler's Source: the state of the running
// snapshot, reloads, and backend admin states and weights (kept on the
// backends in the registry, so they survive reloads like health does).

// stickyWindow is how far back a draining backend's sticky sessions are
// counted: a session not seen for this long is taken as ended.
const stickyWindow = 30 * time.Minute

// adminSource adapts *Server to admin.Source.
type adminSource struct {
	s       *Server
	reread  func() (*config.Config, error)
	started time.Time
	version string
}

var _ admin.Source = (*adminSource)(nil)

// State describes the running snapshot.
func (a *adminSource) State() admin.State {
	s := a.s
	snap := s.snap.Load()
	now := time.Now()
	st := admin.State{Version: a.version, Started: a.started, ConfigHash: configHash(snap.cfg)}
	if s.access != nil {
		st.LogDropped = s.access.Dropped()
	}
	st.ProcessLogDropped = s.processLogDropped()
	if s.tlsLn != nil {
		st.Listeners = append(st.Listeners, admin.Listener{Name: "https", Addr: s.tlsLn.Addr().String(), Proto: "https"})
	}
	if s.httpLn != nil {
		st.Listeners = append(st.Listeners, admin.Listener{Name: "http", Addr: s.httpLn.Addr().String(), Proto: "http-redirect"})
	}
	for i, ln := range s.tcpLns {
		st.Listeners = append(st.Listeners, admin.Listener{Name: snap.cfg.TCPListens()[i], Addr: ln.Addr().String(), Proto: "tcp"})
	}
	if s.adminLn != nil {
		st.Listeners = append(st.Listeners, admin.Listener{Name: "admin", Addr: s.adminLn.Addr().String(), Proto: "admin"})
	}
	for _, h := range snap.apps {
		app := admin.App{Name: h.cfg.Name, Hosts: h.cfg.Hosts, Path: h.cfg.Path, Balance: h.cfg.Balance, Sticky: h.cfg.Sticky != nil}
		prio := map[string]int{}
		for _, b := range h.cfg.Backends {
			prio[b.ID] = b.Priority
		}
		for _, b := range h.pool.Backends() {
			n, last := b.StickySessions(now, stickyWindow)
			app.Backends = append(app.Backends, admin.Backend{
				ID: b.ID(), Addr: b.Addr(), Up: b.Up(now), AdminState: b.AdminState().String(),
				Weight: h.pool.Weight(b), Priority: prio[b.ID()], Active: h.pool.Active(b, now),
				InFlight: b.InFlight(), Latency: b.Latency(), StickySessions: n, LastStickyAt: last,
			})
		}
		st.Apps = append(st.Apps, app)
	}
	st.Certificates = snap.certificates()
	if c := s.cluster; c != nil {
		st.Cluster = &admin.Cluster{Instance: c.node.ID(), Redis: c.node.Where(), RedisDown: c.node.Down(), AdminSync: c.admin != nil}
		if c.admin != nil {
			st.Cluster.AdminVersion = c.admin.applied()
		}
	}
	return st
}

// certificates lists the certificate of every configured exact host as
// served now, without ordering or waiting for one.
func (snap *snapshot) certificates() []admin.Certificate {
	var out []admin.Certificate
	seen := map[*tls.Certificate]bool{}
	for _, a := range snap.cfg.Apps {
		for _, host := range a.Hosts {
			if strings.HasPrefix(host, "*") {
				continue
			}
			var cert *tls.Certificate
			if snap.sources[host] == config.TLSAuto && snap.acme != nil {
				cert = snap.acme.Current(host)
			} else if c, err := snap.certs.GetCertificate(&tls.ClientHelloInfo{ServerName: host}); err == nil {
				cert = c
			}
			if cert == nil || seen[cert] || len(cert.Certificate) == 0 {
				continue
			}
			seen[cert] = true
			leaf := cert.Leaf
			if leaf == nil {
				continue
			}
			names := leaf.DNSNames
			for _, ip := range leaf.IPAddresses {
				names = append(names, ip.String())
			}
			out = append(out, admin.Certificate{Names: names, Issuer: leaf.Issuer.CommonName, Source: snap.sources[host], NotAfter: leaf.NotAfter})
		}
	}
	return out
}

// ConfigHash identifies a validated configuration: instances started with
// equal configurations report equal hashes (status page, cluster
// heartbeat, tlsedge check --cluster).
func ConfigHash(cfg *config.Config) string { return configHash(cfg) }

// configHash identifies a configuration: equal configurations, equal
// hashes (for comparing instances).
//
// It hashes the YAML form (what `tlsedge check` prints), which has no
// pointers or map order in it: equal on every instance, not only within
// one process. What is per instance by nature is left out: the instance
// id, the state directory (and the key file in it), logging, and the admin
// listener.
func configHash(cfg *config.Config) string {
	c := *cfg
	c.Cluster.InstanceID, c.StateDir, c.StickyKeyFile = "", "", ""
	c.Log, c.Admin, c.AdminTokenFile = config.Log{}, "", ""
	b, err := c.Marshal()
	if err != nil {
		b = fmt.Appendf(nil, "unmarshalable: %v", err) // a struct of plain fields: never
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Health is the server's /healthz verdict.
func (a *adminSource) Health() (bool, string) { return a.s.health() }

// Reload reads the configuration again and applies it.
func (a *adminSource) Reload(context.Context) error {
	if a.reread == nil {
		return errors.New("this server cannot read its configuration again")
	}
	cfg, err := a.reread()
	if err != nil {
		return err
	}
	return a.s.Reload(cfg)
}

// pool finds an app's pool by name.
func (a *adminSource) pool(app string) (*upstream.Pool, error) {
	snap := a.s.snap.Load()
	i := slices.IndexFunc(snap.apps, func(h *appHandler) bool { return h.cfg.Name == app })
	if i < 0 {
		return nil, fmt.Errorf("%w: no app %q", admin.ErrNotFound, app)
	}
	return snap.apps[i].pool, nil
}

func (a *adminSource) SetBackendState(app, backend, state string) error {
	p, err := a.pool(app)
	if err != nil {
		return err
	}
	s, err := upstream.ParseAdminState(state)
	if err != nil {
		return fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	if p.Backend(backend) == nil {
		return fmt.Errorf("%w: no backend %q in app %q", admin.ErrNotFound, backend, app)
	}
	if err := p.SetAdminState(backend, s); err != nil {
		return adminError(err)
	}
	a.share(cluster.AdminChange{Kind: cluster.AdminState, App: app, Backend: backend, State: state})
	return nil
}

// share hands a change made here to the cluster (cluster.admin_sync).
func (a *adminSource) share(c cluster.AdminChange) {
	if cs := a.s.cluster; cs != nil && cs.admin != nil {
		cs.admin.share(c)
	}
}

// adminError maps upstream's errors to the admin API's statuses.
func adminError(err error) error {
	switch {
	case errors.Is(err, upstream.ErrUnknownBackend):
		return fmt.Errorf("%w: %v", admin.ErrNotFound, err)
	case errors.Is(err, upstream.ErrInvalidWeight), errors.Is(err, upstream.ErrUnknownAdminState):
		return fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	return err
}

func (a *adminSource) SetWeight(app, backend string, weight int) error {
	p, err := a.pool(app)
	if err != nil {
		return err
	}
	if p.Backend(backend) == nil {
		return fmt.Errorf("%w: no backend %q in app %q", admin.ErrNotFound, backend, app)
	}
	if err := p.SetWeight(backend, weight); err != nil {
		return adminError(err)
	}
	a.share(cluster.AdminChange{Kind: cluster.AdminWeight, App: app, Backend: backend, Weight: weight})
	return nil
}

// adminHandler is the admin listener's handler: status page, JSON API.
// The token file is read once, at start.
func (s *Server) adminHandler() (http.Handler, error) {
	token := ""
	if f := s.cfg.AdminTokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("admin_token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("admin_token_file %s: the file is empty", f)
		}
	}
	log := s.opts.Log.WithField("component", "admin")
	src := &adminSource{s: s, reread: s.opts.Reread, started: time.Now(), version: s.opts.Version}
	return admin.New(src, admin.Config{
		Token:   token,
		Metrics: s.metrics.Handler(),
		Log:     func(msg string, kv ...any) { log.WithField("detail", fmt.Sprint(kv...)).Info(msg) },
	})
}
