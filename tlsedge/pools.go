package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"reflect"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// newPoolAndProxy builds an app's backend pool (balancer, priority groups)
// and the proxy in front of it (passive health, load limits, queue,
// retries) from the app's configuration.
func newPoolAndProxy(app *config.App, cfg *config.Config, reg *upstream.Registry, log *logrus.Entry, onEject func(*upstream.Backend)) (*upstream.Pool, *upstream.Proxy, error) {
	var err error
	pc := upstream.PoolConfig{
		Log:                   log, // admin state and weight changes
		DialTimeout:           cfg.Upstream.DialTimeout.D(),
		ResponseHeaderTimeout: cfg.Upstream.ResponseHeaderTimeout.D(),
		IdleConnTimeout:       cfg.Upstream.IdleConnTimeout.D(),
		Balancer:              app.Balance,
		Protocol:              app.Protocol,
		BalancerOptions:       upstream.BalancerOptions{SlowStart: app.SlowStart.D()},
		MinActive:             app.MinActive,
	}
	for _, b := range app.Backends {
		pc.Backends = append(pc.Backends, upstream.BackendConfig{ID: b.ID, Addr: b.Addr, Weight: b.Weight, Priority: b.Priority, SRV: b.SRV})
	}
	pc.Resolve = app.Resolve.D()
	if pc.TLS, err = backendTLSConfig(app, log); err != nil {
		return nil, nil, err
	}
	pool, err := upstream.NewPool(pc, reg)
	if err != nil {
		return nil, nil, err
	}
	xc := upstream.ProxyConfig{
		OnEject:      onEject,
		Pool:         pool,
		Log:          log,
		PassiveFails: app.PassiveFails,
		Passive5xx:   app.Passive5xx,
		MaxConns:     app.MaxConns,
		Queue: upstream.QueueConfig{
			Len:            app.Queue,
			Timeout:        app.QueueTimeout.D(),
			PriorityPaths:  app.QueuePriorityPaths,
			PriorityHeader: app.QueuePriorityHeader,
		},
	}
	if app.RetryBudget != "" {
		if xc.RetryBudget.Ratio, err = config.ParsePercent(app.RetryBudget); err != nil {
			return nil, nil, err
		}
	}
	proxy, err := upstream.NewProxy(xc)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, proxy, nil
}

// adoptPools hands the idle backend connections of old's apps over to
// the apps of snap with the same name whose connections would be made the
// same way, and returns for how many backends it did. Only Reload calls
// it, once snap compiled completely and before it is swapped in: a failed
// reload, a dry run or an explain never takes connections from the
// running snapshot (their pools are closed, which would close them).
//
// The app's backend_tls must be the same, and so must what its files said
// when each snapshot read them: a new CA or client certificate at the same
// path makes new connections. Protocol and the upstream timeouts are
// compared by Pool.Adopt itself, and backends are matched there by ID,
// address and TLS name. TCP services have no idle connections to keep.
func (snap *snapshot) adoptPools(old *snapshot) int {
	prev := make(map[string]*appHandler, len(old.apps))
	for _, a := range old.apps {
		prev[a.cfg.Name] = a
	}
	n := 0
	for _, a := range snap.apps {
		o := prev[a.cfg.Name]
		if o == nil || !reflect.DeepEqual(o.cfg.BackendTLS, a.cfg.BackendTLS) ||
			!sameClientTLS(o.pool.Config().TLS, a.pool.Config().TLS) {
			continue
		}
		n += a.pool.Adopt(o.pool)
	}
	return n
}

// sameClientTLS reports whether two configurations built by
// backendTLSConfig make the same connections: the settings it copies from
// backend_tls and the roots and client certificates it read from files.
func sameClientTLS(a, b *tls.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.MinVersion != b.MinVersion || a.ServerName != b.ServerName || a.InsecureSkipVerify != b.InsecureSkipVerify ||
		!a.RootCAs.Equal(b.RootCAs) || len(a.Certificates) != len(b.Certificates) {
		return false
	}
	for i := range a.Certificates {
		ca, cb := a.Certificates[i].Certificate, b.Certificates[i].Certificate
		if len(ca) != len(cb) {
			return false
		}
		for j := range ca {
			// The key goes with the leaf: a pair that loaded has the
			// leaf's public key, so the same leaf means the same key.
			if !bytes.Equal(ca[j], cb[j]) {
				return false
			}
		}
	}
	return true
}

// healthConfig translates an app's health settings; nil without checks.
// With re-encryption the checks are HTTPS with the same TLS settings.
func healthConfig(app *config.App, backendTLS *tls.Config) (*upstream.HealthConfig, error) {
	h := app.Health
	if h == nil {
		return nil, nil
	}
	lo, hi, err := h.StatusRange()
	if err != nil {
		return nil, err
	}
	hc := &upstream.HealthConfig{
		Path:      h.Path,
		Interval:  h.Interval.D(),
		Timeout:   h.Timeout.D(),
		StatusMin: lo,
		StatusMax: hi,
		Body:      h.Body,
		Rise:      h.Rise,
		Fall:      h.Fall,
		TLS:       backendTLS,
	}
	if err := hc.Validate(); err != nil {
		return nil, err
	}
	return hc, nil
}

// runHealth runs the active checks of every app that has them until ctx
// ends, and waits for them to stop.
func (snap *snapshot) runHealth(ctx context.Context) {
	var checkers []*upstream.HealthChecker
	start := func(pool *upstream.Pool, cfg *upstream.HealthConfig, log *logrus.Entry) {
		hc, err := upstream.StartHealth(ctx, pool, *cfg, log.WithField("component", "health"))
		if err != nil {
			log.WithError(err).Error("health checks not started")
			return
		}
		log.WithField("check", cfg.String()).Info("health checks started")
		checkers = append(checkers, hc)
	}
	for _, a := range snap.apps {
		if a.health != nil {
			start(a.pool, a.health, a.log)
		}
	}
	for _, t := range snap.tcpServices {
		if t.health != nil {
			start(t.pool, t.health, t.log)
		}
	}
	// Pools whose backends are DNS names follow DNS.
	for _, a := range snap.apps {
		if a.cfg.Resolve > 0 {
			stop := a.pool.StartResolver(ctx, a.log.WithField("component", "dns"))
			defer stop()
		}
	}
	<-ctx.Done()
	for _, hc := range checkers {
		hc.Stop()
	}
}

// backendTLSConfig builds the client TLS configuration of re-encryption;
// nil for plain HTTP.
func backendTLSConfig(app *config.App, log *logrus.Entry) (*tls.Config, error) {
	bt := app.BackendTLS
	if bt == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: bt.ServerName}
	if bt.CA != "" {
		pem, err := os.ReadFile(bt.CA)
		if err != nil {
			return nil, fmt.Errorf("backend_ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend_ca %s: no PEM certificates in it", bt.CA)
		}
	}
	if bt.Cert != "" {
		cert, err := tls.LoadX509KeyPair(bt.Cert, bt.Key)
		if err != nil {
			return nil, fmt.Errorf("backend_cert %s, backend_key %s: %w", bt.Cert, bt.Key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if bt.Insecure {
		tc.InsecureSkipVerify = true
		log.Warn("backend_insecure: TLS to the backends is not verified; anyone on the path can impersonate them")
	}
	return tc, nil
}
