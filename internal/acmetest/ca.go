package acmetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// CA is a running Pebble ACME CA with its DNS server. Its methods may be
// called from any goroutine; Stop, Restart and Roots serialize with each
// other.
type CA struct {
	opts      Options
	bin       string // directory with the binaries
	config    string // Pebble's config file
	api       *apiCreds
	addrs     addrs
	apiTLS    *http.Transport // trusts api; used for the proxy's backend and HTTPClient
	journal   *journal
	aux       *textLog // pebble-challtestsrv and proxy output
	challProc *proc

	life     sync.Mutex   // serializes Stop, Restart, Roots and teardown
	pending  net.Listener // the public listener bound by Start, until the first proxy takes it
	pebble   *proc        // nil while stopped
	proxy    *proxy       // nil while stopped
	stopErrs []error      // kills that failed, reported by the cleanup

	mu            sync.Mutex // guards the two slices below
	roots, inters []*x509.Certificate
}

// pebbleEnv is Pebble's environment. PEBBLE_VA_ALWAYS_VALID is
// deliberately absent (childEnv strips it): validation is the point.
func pebbleEnv() []string {
	return []string{
		// Without it the VA sleeps up to 5 s (PEBBLE_VA_SLEEPTIME) before
		// each validation, which is realistic and makes every test slow.
		"PEBBLE_VA_NOSLEEP=1",
		// Pebble rejects 5% of good nonces by default to exercise client
		// retries; a test asserting "one order" would then flake.
		"PEBBLE_WFE_NONCEREJECT=0",
		// By default Pebble reuses a valid authorization of the same account
		// in half of new orders, so a renewal may or may not be validated
		// again. At 0 every order is validated again, which is what a
		// renewal test wants to watch. Pebble v2.10.3 compares
		// rand.Intn(100) > percent, so 0 still reuses 1 time in 100: count
		// orders and issuances, not validations.
		"PEBBLE_AUTHZREUSE=0",
	}
}

// Start runs pebble-challtestsrv and Pebble on 127.0.0.1 and returns when
// the ACME directory answers, or fails the test. The processes are killed
// when the test ends. Every DNS name resolves to 127.0.0.1 for Pebble, so
// HTTP-01 and TLS-ALPN-01 validations of any name reach
// 127.0.0.1:HTTPPort and 127.0.0.1:TLSPort.
//
// The first Start of a test process builds the binaries (see Cleanup): about
// 1 s with a warm Go build cache, 25 s with a cold one. A Start after that
// takes about 60 ms, a Restart 40 ms. When the test fails, the cleanup logs
// the output of both processes.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := newCA(t.TempDir(), opts)
		if err != nil {
			t.Fatalf("acmetest: %v", err)
		}
		err = c.launch()
		if err == nil {
			t.Cleanup(func() { c.cleanup(t) })
			return c
		}
		// A child that exited most likely lost one of its ports to another
		// process between pickAddrs releasing it and the child binding it
		// (see portSet); fresh ports fix that.
		retry := errors.Is(err, errExited) && attempt < startAttempts
		if terr := c.teardown(); terr != nil {
			t.Errorf("acmetest: %v", terr)
		}
		if !retry {
			t.Fatalf("acmetest: %v\npebble output:\n%s\npebble-challtestsrv and proxy output:\n%s",
				err, tail(c.Log(), 16<<10), tail(c.aux.String(), 8<<10))
		}
		t.Logf("acmetest: attempt %d: %v; retrying with fresh ports", attempt, err)
	}
}

// startAttempts is how often Start tries fresh ports when a child exits
// during startup.
const startAttempts = 3

// launch starts both processes.
func (c *CA) launch() error {
	if err := c.startChallSrv(); err != nil {
		return err
	}
	return c.startPebble()
}

// newCA prepares everything but the processes.
func newCA(dir string, opts Options) (*CA, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	opts.EAB = cloneMap(opts.EAB)
	opts.Profiles = cloneMap(opts.Profiles)
	opts.Blocklist = append([]string(nil), opts.Blocklist...)

	bin, err := binaries()
	if err != nil {
		return nil, err
	}
	api, err := newAPICreds(dir)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bind the ACME port: %w", err)
	}
	a, err := pickAddrs(ln, opts.HTTPPort, opts.TLSPort)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	c := &CA{
		opts:    opts,
		bin:     bin,
		config:  filepath.Join(dir, "pebble-config.json"),
		api:     api,
		addrs:   a,
		journal: newJournal(),
		aux:     &textLog{},
		pending: ln,
		apiTLS: &http.Transport{
			TLSClientConfig:       &tls.Config{RootCAs: api.roots},
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       30 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 90 * time.Second, // Pebble's own handler timeout is 1 min
		},
	}
	if err := writeConfig(c.config, &opts, a, api); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return c, nil
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// exe is the file name of a built command.
func (c *CA) exe(name string) string {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(c.bin, name)
}

// startChallSrv runs pebble-challtestsrv as a DNS server only: every A query
// gets 127.0.0.1, AAAA queries get nothing (so Pebble never tries ::1), and
// its HTTP-01, HTTPS-01, TLS-ALPN-01 and DoH servers are off, so it holds
// none of the ports the code under test needs.
func (c *CA) startChallSrv() error {
	args := []string{
		"-dnsserver", c.addrs.dns,
		"-management", c.addrs.challMgmt,
		"-defaultIPv4=127.0.0.1",
		"-defaultIPv6=",
		"-http01=", "-https01=", "-tlsalpn01=", "-doh=",
	}
	p, err := startProc(c.exe("pebble-challtestsrv"), args, childEnv(), c.aux.addLine)
	if err != nil {
		return err
	}
	c.challProc = p
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.startTimeout())
	defer cancel()
	// Pebble asks over TCP (va.New sets dnsClient.Net = "tcp"), so a TCP
	// listener is what readiness means.
	err = poll(ctx, p, func(ctx context.Context) error {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.addrs.dns)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		return fmt.Errorf("pebble-challtestsrv DNS on %s: %w", c.addrs.dns, err)
	}
	return nil
}

// startPebble runs Pebble, waits for its ACME and management listeners,
// then opens the proxy and records the new root. Callers hold c.life or
// are launch, before the CA is shared.
func (c *CA) startPebble() error {
	ln := c.pending
	c.pending = nil
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", c.addrs.public); err != nil {
			return fmt.Errorf("rebind the ACME port: %w", err)
		}
	}
	args := []string{"-config", c.config, "-dnsserver", c.addrs.dns, "-strict=false"}
	p, err := startProc(c.exe("pebble"), args, childEnv(pebbleEnv()...), c.journal.addLine)
	if err != nil {
		_ = ln.Close()
		return err
	}
	c.pebble = p

	ctx, cancel := context.WithTimeout(context.Background(), c.opts.startTimeout())
	defer cancel()
	// The management listener starts in its own goroutine, after or before
	// the ACME one; both must answer.
	err = poll(ctx, p, func(ctx context.Context) error {
		if _, err := c.get(ctx, "https://"+c.addrs.pebble+"/dir"); err != nil {
			return err
		}
		_, err := c.get(ctx, c.ManagementURL()+"/roots/0")
		return err
	})
	if err != nil {
		_ = ln.Close()
		c.stopLocked()
		return fmt.Errorf("pebble on %s: %w", c.addrs.pebble, err)
	}
	c.proxy = startProxy(ln, c.addrs.pebble, c.apiTLS, c.api.cert, c.journal, c.aux)
	if _, err := c.get(ctx, c.DirectoryURL()); err != nil {
		c.stopLocked()
		return fmt.Errorf("directory through the proxy: %w", err)
	}
	if err := c.fetchRoots(ctx); err != nil {
		c.stopLocked()
		return err
	}
	return nil
}

// poll calls try until it succeeds, p exits or ctx ends.
func poll(ctx context.Context, p *proc, try func(context.Context) error) error {
	var lastErr error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		// An attempt can hang on a port someone else holds (a TLS
		// handshake nobody answers); the child's exit ends it early.
		go func() {
			select {
			case <-p.exited:
				cancel()
			case <-attempt.Done():
			}
		}()
		lastErr = try(attempt)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w (%v); last attempt: %w", errExited, p.err, lastErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w; last attempt: %w", ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills Pebble and closes the ACME port, so clients get connection
// refused as from a CA that is down. pebble-challtestsrv keeps running.
// Stopping a stopped CA does nothing.
func (c *CA) Stop() {
	c.life.Lock()
	defer c.life.Unlock()
	c.stopLocked()
}

func (c *CA) stopLocked() {
	if c.proxy != nil {
		c.proxy.close()
		c.proxy = nil
	}
	if c.pebble != nil {
		if err := c.pebble.kill(); err != nil {
			c.stopErrs = append(c.stopErrs, err)
		}
		c.pebble = nil
	}
	// Connections to the dead Pebble would fail the first request on them.
	c.apiTLS.CloseIdleConnections()
}

// Restart stops Pebble if it runs and starts it again with the same config
// and ports. Pebble keeps nothing across a restart: accounts, orders,
// authorizations, nonces and issued certificates are gone (clients get
// accountDoesNotExist and must register again), and it generates a new
// root and intermediate, which Roots adds to those seen before.
func (c *CA) Restart(t testing.TB) {
	t.Helper()
	c.life.Lock()
	defer c.life.Unlock()
	c.stopLocked()
	if err := c.startPebble(); err != nil {
		t.Fatalf("acmetest: restart: %v", err)
	}
}

// teardown kills every process this CA started and closes its port.
func (c *CA) teardown() error {
	c.life.Lock()
	defer c.life.Unlock()
	if c.pending != nil {
		_ = c.pending.Close()
		c.pending = nil
	}
	c.stopLocked()
	if c.challProc != nil {
		if err := c.challProc.kill(); err != nil {
			c.stopErrs = append(c.stopErrs, err)
		}
	}
	return errors.Join(c.stopErrs...)
}

// cleanup is Start's t.Cleanup: teardown and, if the test failed, the
// output of both processes.
func (c *CA) cleanup(t testing.TB) {
	if err := c.teardown(); err != nil {
		t.Errorf("acmetest: %v", err)
	}
	if t.Failed() {
		t.Logf("acmetest: pebble output:\n%s", tail(c.Log(), 64<<10))
		t.Logf("acmetest: pebble-challtestsrv and proxy output:\n%s", tail(c.aux.String(), 16<<10))
	}
}

// DirectoryURL is the ACME directory, https://127.0.0.1:PORT/dir. It is
// served with a certificate from the API CA (APIRootFile), not from Pebble's
// issuing CA.
func (c *CA) DirectoryURL() string { return "https://" + c.addrs.public + "/dir" }

// ManagementURL is Pebble's management API, https://127.0.0.1:PORT, served
// with the API CA's certificate: /roots/0, /intermediates/0,
// /cert-status-by-serial/SERIAL, POST /set-renewal-info/.
func (c *CA) ManagementURL() string { return "https://" + c.addrs.management }

// HTTPPort is the port Pebble sends HTTP-01 validation requests to.
func (c *CA) HTTPPort() int { return c.addrs.httpPort }

// TLSPort is the port Pebble sends TLS-ALPN-01 validation handshakes to.
func (c *CA) TLSPort() int { return c.addrs.tlsPort }

// HTTPAddr and TLSAddr are HTTPPort and TLSPort on 127.0.0.1, to listen on.
func (c *CA) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.addrs.httpPort)) }

// TLSAddr: see HTTPAddr.
func (c *CA) TLSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.addrs.tlsPort)) }

// APIRootFile is a PEM file with the CA that signed the certificate of the
// ACME and management listeners; ACME clients must trust it (--acme-ca-root).
// It is generated per CA and is not the CA that issues certificates (Roots).
func (c *CA) APIRootFile() string { return c.api.rootFile }

// APIRoots is APIRootFile as a pool; the caller may modify it.
func (c *CA) APIRoots() *x509.CertPool { return c.api.roots.Clone() }

// HTTPClient returns a client that trusts APIRoots, for ACME clients and for
// the management API. Each call returns a new client sharing one transport.
func (c *CA) HTTPClient() *http.Client {
	return &http.Client{Transport: c.apiTLS, Timeout: 2 * time.Minute}
}
