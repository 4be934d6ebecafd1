package tlsedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/session"
	"github.com/tlsedge/tlsedge/upstream"
)

// snapshot is one compiled configuration: routes, app handlers, the
// certificate selector. It is immutable once built; a reload builds a new
// one and swaps the server's pointer, and requests in flight finish on the
// one they started with. State that must outlive it (backend health,
// connection pools) lives in the upstream.Registry.
type snapshot struct {
	cfg    *config.Config
	routes *routeTable
	apps   []*appHandler
	certs  *certs.Selector
	static *certs.Static // nil without certificate files
	ca     *certs.LocalCA
	caDir  string // where the local CA lives (or would, in `check`)
}

// compileDeps are the long-lived things a snapshot is compiled against.
type compileDeps struct {
	log          *logrus.Logger
	registry     *upstream.Registry
	access       *accessLog
	certPoll     time.Duration
	stickyKeys   func(path string) ([]session.Key, error)
	localCA      bool // false in `check`: describe the CA, create nothing
	caLeafExpiry time.Duration
	now          func() time.Time
}

func (s *Server) compileDeps() compileDeps {
	return compileDeps{
		log:        s.opts.Log,
		registry:   s.registry,
		access:     s.access,
		certPoll:   s.opts.CertPollInterval,
		stickyKeys: session.LoadOrCreateKeyFile,
		localCA:    true,
		now:        s.opts.Now,
	}
}

// compile turns a validated configuration into a snapshot.
func compile(cfg *config.Config, d compileDeps) (*snapshot, error) {
	snap := &snapshot{cfg: cfg, routes: newRouteTable()}
	if err := snap.compileCerts(cfg, d); err != nil {
		return nil, err
	}
	var keys []session.Key
	for i := range cfg.Apps {
		app := &cfg.Apps[i]
		if app.Sticky != nil && keys == nil {
			k, err := d.stickyKeys(cfg.StickyKeyFile)
			if err != nil {
				return nil, fmt.Errorf("sticky_key_file: %w", err)
			}
			keys = k
		}
		h, err := newAppHandler(app, cfg, keys, d)
		if err != nil {
			return nil, fmt.Errorf("app %q: %w", app.Name, err)
		}
		snap.apps = append(snap.apps, h)
		for _, host := range app.Hosts {
			snap.routes.add(host, app.Path, h)
		}
	}
	return snap, nil
}

// compileCerts builds the certificate selector: certificate files first,
// then the local CA for every configured host no file covers.
func (snap *snapshot) compileCerts(cfg *config.Config, d compileDeps) error {
	var sources []certs.Source
	if len(cfg.TLS.Certs) > 0 || cfg.TLS.CertDir != "" {
		sc := certs.StaticConfig{Dir: cfg.TLS.CertDir, PollInterval: d.certPoll, Log: d.log.WithField("component", "certs")}
		for _, p := range cfg.TLS.Certs {
			sc.Pairs = append(sc.Pairs, certs.Pair{CertFile: p.Cert, KeyFile: p.Key})
		}
		st, err := certs.NewStatic(sc)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		snap.static = st
		sources = append(sources, st)
	}
	var uncovered []string
	for _, app := range cfg.Apps {
		for _, h := range app.Hosts {
			if snap.static == nil || !covers(snap.static, h) {
				uncovered = append(uncovered, h)
			}
		}
	}
	if len(uncovered) > 0 {
		snap.caDir = filepath.Join(cfg.StateDir, "ca")
	}
	if len(uncovered) > 0 && d.localCA {
		ca, err := certs.NewLocalCA(certs.LocalCAConfig{
			Dir:          snap.caDir,
			Hosts:        uncovered,
			LeafLifetime: d.caLeafExpiry,
			Log:          d.log.WithField("component", "localca"),
		})
		if err != nil {
			return fmt.Errorf("local CA: %w", err)
		}
		snap.ca = ca
		sources = append(sources, ca)
	}
	snap.certs = certs.NewSelector(sources...)
	return nil
}

// covers reports whether a static source has a certificate for a host
// pattern; a wildcard pattern is probed with a name it would match.
func covers(st *certs.Static, host string) bool {
	name := host
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		name = "tlsedge-probe." + rest
	}
	cert, err := st.Lookup(&tls.ClientHelloInfo{ServerName: name})
	return err == nil && cert != nil
}

// run owns the snapshot's background work (watching certificate files)
// until ctx ends.
func (snap *snapshot) run(ctx context.Context) {
	if snap.static != nil {
		snap.static.Run(ctx)
	}
}

// describeCert says where a host's certificate comes from.
func (snap *snapshot) describeCert(host string) string {
	if snap.ca == nil && snap.caDir != "" && (snap.static == nil || !covers(snap.static, host)) {
		return "local CA in " + snap.caDir + " (created at first start)"
	}
	return snap.certs.Describe(host)
}

// Check compiles a validated configuration the way New does — loading
// certificate files and sticky keys — without creating or opening
// anything, and returns one line per host saying where its certificate
// comes from.
func Check(cfg *config.Config, log *logrus.Logger) ([]string, error) {
	d := compileDeps{
		log:      log,
		registry: upstream.NewRegistry(),
		localCA:  false,
		stickyKeys: func(path string) ([]session.Key, error) {
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return []session.Key{session.GenerateKey()}, nil // generated at first start
			}
			return session.LoadKeyFile(path)
		},
	}
	snap, err := compile(cfg, d)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, a := range cfg.Apps {
		for _, h := range a.Hosts {
			lines = append(lines, "certificate for "+h+": "+snap.describeCert(h))
		}
	}
	return lines, nil
}
