package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Active health checks: one goroutine per backend of a pool probes it every
// Interval and feeds the result into a rise/fall counter; when the counter
// crosses Rise or Fall, the verdict goes to the shared *Backend
// (SetChecked) and one line is logged. The counters live in the checker,
// the verdict on the Backend, so a checker started after a reload
// continues from the state the old one left: a backend that was down stays
// down until it passes Rise checks, and a new backend starts up.
//
// Checks are not the hot path: net/http is the client, with a fresh
// connection per check.

// HealthChecker runs the active health checks of one pool. It ends when the
// context given to StartHealth ends or when Stop is called.
type HealthChecker struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Stop ends the checks and waits until every checker goroutine has
// returned; a check in flight is abandoned and records no verdict. It is
// safe to call more than once and from several goroutines.
func (h *HealthChecker) Stop() {
	h.cancel()
	h.wg.Wait()
}

// StartHealth validates cfg and starts one checker goroutine per backend of
// pool; it returns at once. The first checks are spread evenly over one
// Interval, from a random phase, so that the backends of a pool (and pools
// started together) are not probed at the same instant.
//
// Backends keep the verdict they have: a fresh one is up (so that a
// restart does not take a site down before the first checks), and Fall
// failed checks take it down. State changes are logged through log, which
// may be nil.
//
// On a reload, start the checker of the new pool and Stop the old one; a
// backend both pools share is probed by both for that moment, harmlessly.
func StartHealth(ctx context.Context, pool *Pool, cfg HealthConfig, log *logrus.Entry) (*HealthChecker, error) {
	if pool == nil {
		return nil, errHealthNoPool
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client := newHealthClient(cfg)
	newChecker := func(b *Backend) (*backendChecker, error) {
		var p prober = &tcpProber{dialer: &net.Dialer{Timeout: cfg.timeout()}, addr: b.addr}
		if !cfg.TCP {
			hp, err := newHTTPProber(cfg, client, b.addr)
			if err != nil {
				return nil, fmt.Errorf("upstream: health check of backend %q: %w", b.id, err)
			}
			p = hp
		}
		return &backendChecker{
			b: b, prober: p, log: log,
			timeout: cfg.timeout(), rise: cfg.rise(), fall: cfg.fall(),
		}, nil
	}
	backends := pool.Backends()
	checkers := make([]*backendChecker, len(backends))
	for i, b := range backends {
		c, err := newChecker(b)
		if err != nil {
			return nil, err
		}
		checkers[i] = c
	}

	ctx, cancel := context.WithCancel(ctx)
	h := &HealthChecker{cancel: cancel}
	interval := cfg.interval()
	phase := rand.N(interval)
	running := make(map[*Backend]context.CancelFunc, len(checkers))
	for i, c := range checkers {
		first := firstCheck(i, len(checkers), phase, interval)
		cctx, stop := context.WithCancel(ctx)
		running[c.b] = stop
		h.wg.Go(func() { c.run(cctx, first, interval) })
	}
	if pool.hasNames() && pool.cfg.Resolve > 0 {
		h.wg.Go(func() { h.follow(ctx, pool, running, newChecker, interval) })
	}
	return h, nil
}

// follow keeps one checker per backend as DNS changes the pool's
// membership: addresses that appear are checked from the next interval
// on, and the checks of addresses that went away stop.
func (h *HealthChecker) follow(ctx context.Context, pool *Pool, running map[*Backend]context.CancelFunc,
	newChecker func(*Backend) (*backendChecker, error), interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := map[*Backend]bool{}
		for _, b := range pool.Backends() {
			now[b] = true
			if _, ok := running[b]; ok {
				continue
			}
			c, err := newChecker(b)
			if err != nil {
				continue // the same settings passed for the first backends
			}
			cctx, stop := context.WithCancel(ctx)
			running[b] = stop
			h.wg.Go(func() { c.run(cctx, rand.N(interval), interval) })
		}
		for b, stop := range running {
			if !now[b] {
				stop()
				delete(running, b)
			}
		}
	}
}

// firstCheck is the delay before the first check of the i-th of n
// backends: n evenly spaced points of [0, interval), turned by phase.
func firstCheck(i, n int, phase, interval time.Duration) time.Duration {
	return (phase + time.Duration(i)*(interval/time.Duration(n))) % interval
}

// prober checks one backend once.
type prober interface {
	// probe returns a description of a passed check for the log ("status
	// 200"), or the reason it failed. It returns when ctx ends.
	probe(ctx context.Context) (string, error)
}

var (
	_ prober = (*httpProber)(nil)
	_ prober = (*tcpProber)(nil)
)

// backendChecker is the state of the checks of one backend; only its
// goroutine touches it.
type backendChecker struct {
	b          *Backend
	prober     prober
	log        *logrus.Entry
	timeout    time.Duration
	rise, fall int
	oks, fails int // consecutive passed and failed checks; one is always 0
}

// run checks c.b first after first, then every interval, until ctx ends.
func (c *backendChecker) run(ctx context.Context, first, interval time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	// A check takes less than Timeout < interval, so ticks do not pile
	// up; a tick missed anyway (a stalled machine) is dropped by Ticker.
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		c.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check probes the backend once and records the result. A panic is a bug
// of ours, not a verdict on the backend: it is logged with its stack and
// the checks go on.
func (c *backendChecker) check(ctx context.Context) {
	defer func() {
		if v := recover(); v != nil && c.log != nil {
			c.log.WithFields(logrus.Fields{
				"backend": c.b.id, "addr": c.b.addr, "panic": fmt.Sprint(v), "stack": string(debug.Stack()),
			}).Error("health check panicked")
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	reason, err := c.prober.probe(cctx)
	if ctx.Err() != nil {
		return // stopped mid-check: says nothing about the backend
	}
	if err != nil {
		reason = checkFailure(cctx, err, c.timeout)
	}
	c.record(err == nil, reason, time.Now())
}

// checkFailure turns a failed probe into the reason logged.
func checkFailure(cctx context.Context, err error, timeout time.Duration) string {
	var ne net.Error
	if cctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout after " + timeout.String()
	}
	// net/http wraps everything in `Get "http://addr/path": ...`; the
	// address is in the log line already.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// record counts one check result and, once Rise passes or Fall failures
// come in a row, hands the verdict to the backend. The current state is
// read from the backend, not remembered, so that two checkers of one
// backend (the moment of a reload) agree, and only the one whose verdict
// changed the state logs it.
func (c *backendChecker) record(ok bool, reason string, now time.Time) {
	up := !c.b.CheckedDown()
	if ok {
		c.fails = 0
		c.oks = min(c.oks+1, c.rise)
		if up || c.oks < c.rise {
			return
		}
	} else {
		c.oks = 0
		c.fails = min(c.fails+1, c.fall)
		if !up || c.fails < c.fall {
			return
		}
	}
	if c.b.SetChecked(ok, now) {
		logChecked(c.log, c.b, ok, reason)
	}
}

// logChecked logs b's active-check verdict turning to up (or down), with
// the field names of logEjected and logRecovered.
func logChecked(log *logrus.Entry, b *Backend, up bool, reason string) {
	if log == nil {
		return
	}
	from, to := stateUp, stateDown
	if up {
		from, to = stateDown, stateUp
	}
	e := log.WithFields(logrus.Fields{
		"backend": b.id, "addr": b.addr, "from": from, "to": to, "reason": reason,
	})
	msg := "backend " + b.id + " " + from + " -> " + to
	if up {
		e.Info(msg)
	} else {
		e.Warn(msg)
	}
}

// newHealthClient builds the HTTP client of a pool's checks: HTTP/1.1, a
// new connection per check, no proxy, no redirects followed.
func newHealthClient(cfg HealthConfig) *http.Client {
	d := &net.Dialer{Timeout: cfg.timeout()}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	tr := &http.Transport{
		// Never the environment's HTTP_PROXY: backends are dialled directly.
		Proxy:       nil,
		DialContext: d.DialContext,
		// A connection kept for the next check would hide a backend that
		// accepts no new connections (a full accept queue, a dead listener
		// behind a live keep-alive).
		DisableKeepAlives: true,
		// No Accept-Encoding: Body is matched against the body as sent.
		DisableCompression:     true,
		MaxResponseHeaderBytes: healthBodyLimit, // a health answer's head is small
		Protocols:              &protocols,
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
		tr.TLSClientConfig.ServerName = cfg.serverName()
	}
	return &http.Client{
		Transport: tr,
		// A redirect is an answer: its status is checked, its target is not
		// fetched (it may not even be this backend).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpProber GETs a path of one backend.
type httpProber struct {
	client     *http.Client
	url        string
	host       string // Host header; "" means the address
	minS, maxS int
	body       []byte // nil: the body is not read
}

func newHTTPProber(cfg HealthConfig, client *http.Client, addr string) (*httpProber, error) {
	u := cfg.scheme() + "://" + addr + cfg.path()
	if _, err := url.Parse(u); err != nil {
		return nil, err
	}
	p := &httpProber{
		client: client, url: u, host: cfg.Host,
		minS: cfg.statusMin(), maxS: cfg.statusMax(),
	}
	if cfg.Body != "" {
		p.body = []byte(cfg.Body)
	}
	return p, nil
}

func (p *httpProber) probe(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return "", err
	}
	req.Header["User-Agent"] = []string{healthUserAgent}
	if p.host != "" {
		req.Host = p.host
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close() // keep-alives are off: this closes the connection
	if resp.StatusCode < p.minS || resp.StatusCode > p.maxS {
		return "", fmt.Errorf("status %d, want %d-%d", resp.StatusCode, p.minS, p.maxS)
	}
	if p.body != nil {
		got, err := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
		if err != nil {
			return "", fmt.Errorf("read body: %w", err)
		}
		if !bytes.Contains(got, p.body) {
			return "", fmt.Errorf("body lacks %s", strconv.Quote(string(p.body)))
		}
	}
	return "status " + strconv.Itoa(resp.StatusCode), nil
}

// tcpProber connects to one backend and closes the connection at once.
type tcpProber struct {
	dialer *net.Dialer
	addr   string
}

func (p *tcpProber) probe(ctx context.Context) (string, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return "", err
	}
	// A plain close (FIN, not RST): the backend may log an empty
	// connection, but not a reset.
	_ = c.Close()
	return "connected", nil
}
