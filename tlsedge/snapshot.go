package tlsedge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
	"github.com/tlsedge/tlsedge/metrics"
	"github.com/tlsedge/tlsedge/session"
	"github.com/tlsedge/tlsedge/upstream"
)

// snapshot is one compiled configuration: routes, app handlers, the
// certificate selector. It is immutable once built; a reload builds a new
// one and swaps the server's pointer, and requests in flight finish on the
// one they started with. State that must outlive it lives elsewhere:
// backend health, admin state and weights in the upstream.Registry; idle
// backend connections move to the next snapshot's pools at a reload
// (adoptPools) when the app's transport did not change.
type snapshot struct {
	cfg    *config.Config
	routes *routeTable
	front  http.Handler // the frontend filters, then routing
	access *accessLog   // for requests answered by routing itself
	// clientAuth is the client-certificate policy of each host.
	clientAuth *clientAuthTable
	apps       []*appHandler
	certs      *certs.Selector
	static     *certs.Static // nil without certificate files
	ca         *certs.LocalCA
	caDir      string      // where the local CA lives (or would, in `check`)
	acme       *certs.ACME // nil when no app uses ACME
	// tcp routes each TCP listen address to its services.
	tcp         map[string]*tcpRoutes
	tcpServices []*tcpService
	log         *logrus.Entry
	// sources says where each host's certificate comes from: one of
	// config.TLSFiles, TLSAuto, TLSInternal.
	sources map[string]string
	// limiters are the rate limits counted across instances, by name
	// ("frontend", "app:NAME"); empty unless cluster.rate_limits.
	limiters map[string]*filter.RateLimiter
}

// shareLimit returns what the chain gives its rate limits to when they
// are counted across instances, nil otherwise.
func (snap *snapshot) shareLimit(d compileDeps) shareLimit {
	if !d.shareRates || !snap.cfg.Cluster.RateLimits {
		return nil
	}
	return func(name string, l *filter.RateLimiter) {
		if snap.limiters == nil {
			snap.limiters = map[string]*filter.RateLimiter{}
		}
		snap.limiters[name] = l
	}
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
	// openStorage opens ACME storage; nil in `check`, which opens nothing.
	openStorage func(cfg *config.Config) (certmagic.Storage, string, error)
	renewCheck  time.Duration
	metrics     *metrics.Metrics // nil: none
	// shareRates counts rate limits across a cluster's instances
	// (cluster.rate_limits): the snapshot keeps its limiters for the
	// cluster's exchange loop.
	shareRates bool
}

func (s *Server) compileDeps() compileDeps {
	keys := session.LoadOrCreateKeyFile
	if s.cluster != nil {
		keys = s.cluster.loadStickyKeys
	}
	return compileDeps{
		log:        s.opts.Log,
		registry:   s.registry,
		access:     s.access,
		certPoll:   s.opts.CertPollInterval,
		stickyKeys: keys,
		localCA:    true,
		now:        s.opts.Now,
		openStorage: func(cfg *config.Config) (certmagic.Storage, string, error) {
			return certs.OpenStorage(context.Background(), cfg.Storage, cfg.StateDir)
		},
		renewCheck: s.opts.RenewCheckInterval,
		metrics:    s.metrics,
		shareRates: s.cluster != nil,
	}
}

// compile turns a validated configuration into a snapshot.
func compile(cfg *config.Config, d compileDeps) (*snapshot, error) {
	snap := &snapshot{cfg: cfg, routes: newRouteTable(), access: d.access, log: d.log.WithField("component", "server")}
	if err := snap.compileCerts(cfg, d); err != nil {
		return nil, err
	}
	if err := snap.compileTCP(cfg, d); err != nil {
		return nil, err
	}
	table, byApp, err := compileClientAuth(cfg.Apps, snap.log)
	if err != nil {
		return nil, err
	}
	table.poll = d.certPoll
	snap.clientAuth = table
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
		h, err := newAppHandler(app, cfg, keys, d, appFilters{clientAuth: byApp[app.Name], table: table, share: snap.shareLimit(d)})
		if err != nil {
			return nil, fmt.Errorf("app %q: %w", app.Name, err)
		}
		if d.metrics != nil {
			h.metrics = newAppMetrics(d.metrics, h)
		}
		snap.apps = append(snap.apps, h)
		for _, host := range app.Hosts {
			snap.routes.add(host, app.Path, h)
		}
	}
	if snap.front, err = frontChain(&cfg.Frontend, http.HandlerFunc(snap.route), snap.shareLimit(d)); err != nil {
		return nil, err
	}
	return snap, nil
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
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); snap.runHealth(ctx) }()
	if snap.acme != nil {
		wg.Add(1)
		go func() { defer wg.Done(); snap.acme.Run(ctx) }()
	}
	snap.clientAuth.watch(ctx)
	if snap.static != nil {
		snap.static.Run(ctx)
	}
	<-ctx.Done()
	wg.Wait()
}

// describeCert says where a host's certificate comes from.
func (snap *snapshot) describeCert(host string) string {
	if host == config.AnyHost {
		if snap.cfg.TLS.OnDemand.Enabled {
			return "on-demand ACME for names the policy allows, the default certificate otherwise"
		}
		return "the default certificate (clients of other names will see a name mismatch)"
	}
	if snap.sources[host] == config.TLSAuto && snap.acme == nil {
		return "ACME " + snap.cfg.TLS.ACME.ACMEDirectory() + " (storage " + describeStorage(snap.cfg) + ")"
	}
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
		log:        log,
		registry:   upstream.NewRegistry(),
		localCA:    false,
		stickyKeys: offlineStickyKeys,
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
