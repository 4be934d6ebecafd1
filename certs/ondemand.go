package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// OnDemandConfig is the policy for certificates of names not configured in
// advance. A name must match Allow (when given) and be approved by Ask
// (when given); new orders are rate-limited overall and per client IP.
type OnDemandConfig struct {
	// Allow lists exact names and "*.example.com" patterns, which match
	// any name below example.com (not example.com itself).
	Allow []string
	// Ask is asked GET Ask?domain=NAME&ip=CLIENT_IP; 200 allows the name.
	Ask string
	// AskCache is how long an answer, allowed or refused, is kept.
	AskCache time.Duration
	// AskTimeout bounds one ask request (default 5s).
	AskTimeout time.Duration
	// Rate and RatePerIP: at most N new orders per Per, overall and per
	// client IP (bursts up to N).
	Rate, RatePerIP RateLimit
	// Client makes the ask requests (default: a client with AskTimeout).
	Client *http.Client
	Now    func() time.Time
}

// RateLimit is N events per Per.
type RateLimit struct {
	N   int
	Per time.Duration
}

func (r RateLimit) limiter() *rate.Limiter {
	if r.N <= 0 || r.Per <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Every(r.Per/time.Duration(r.N)), r.N)
}

// ErrNotAllowed is wrapped by every on-demand refusal.
var ErrNotAllowed = errors.New("not allowed for on-demand TLS")

// maxAskCache and maxIPLimiters bound the tables a flood of random names
// or addresses could otherwise grow without end.
const (
	maxAskCache   = 10000
	maxIPLimiters = 10000
)

type onDemand struct {
	cfg    OnDemandConfig
	log    *logrus.Entry
	global *rate.Limiter

	mu    sync.Mutex
	asked map[string]askAnswer
	perIP map[string]*rate.Limiter
}

type askAnswer struct {
	allowed bool
	until   time.Time
}

func newOnDemand(c OnDemandConfig, log *logrus.Entry) (*onDemand, error) {
	if len(c.Allow) == 0 && c.Ask == "" {
		return nil, errors.New("on-demand TLS needs an allowlist or an ask URL")
	}
	if c.Ask != "" {
		if u, err := url.Parse(c.Ask); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("on-demand ask URL %q: want http:// or https://", c.Ask)
		}
	}
	if c.AskTimeout <= 0 {
		c.AskTimeout = 5 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: c.AskTimeout}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for i, p := range c.Allow {
		c.Allow[i] = normalizeName(p)
	}
	return &onDemand{
		cfg: c, log: log, global: c.Rate.limiter(),
		asked: map[string]askAnswer{}, perIP: map[string]*rate.Limiter{},
	}, nil
}

// decide allows or refuses a name; it never orders anything.
func (o *onDemand) decide(ctx context.Context, name, ip string) error {
	if len(o.cfg.Allow) > 0 && !matchAllow(o.cfg.Allow, name) {
		return fmt.Errorf("%s: %w: not in the allowlist", name, ErrNotAllowed)
	}
	if o.cfg.Ask == "" {
		return nil
	}
	now := o.cfg.Now()
	o.mu.Lock()
	ans, ok := o.asked[name]
	o.mu.Unlock()
	if !ok || now.After(ans.until) {
		allowed, err := o.ask(ctx, name, ip)
		if err != nil {
			// Not cached: the ask service's trouble is not the name's fault.
			return fmt.Errorf("%s: %w: ask %s failed: %w", name, ErrNotAllowed, o.cfg.Ask, err)
		}
		ans = askAnswer{allowed: allowed, until: now.Add(o.cfg.AskCache)}
		o.remember(name, ans, now)
	}
	if !ans.allowed {
		return fmt.Errorf("%s: %w: refused by %s", name, ErrNotAllowed, o.cfg.Ask)
	}
	return nil
}

func (o *onDemand) ask(ctx context.Context, name, ip string) (bool, error) {
	u, _ := url.Parse(o.cfg.Ask) // checked in newOnDemand
	q := u.Query()
	q.Set("domain", name)
	q.Set("ip", ip)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, o.cfg.AskTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := o.cfg.Client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

func (o *onDemand) remember(name string, ans askAnswer, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.asked) >= maxAskCache {
		for k, v := range o.asked {
			if now.After(v.until) {
				delete(o.asked, k)
			}
		}
		for k := range o.asked { // still full: forget arbitrary entries
			if len(o.asked) < maxAskCache {
				break
			}
			delete(o.asked, k)
		}
	}
	o.asked[name] = ans
}

// allowOrder spends one order from the client's and the global budget.
func (o *onDemand) allowOrder(name, ip string) error {
	o.mu.Lock()
	lim, ok := o.perIP[ip]
	if !ok {
		if len(o.perIP) >= maxIPLimiters {
			for k, l := range o.perIP { // drop full buckets: they are idle clients
				if l.Tokens() >= float64(o.cfg.RatePerIP.N) {
					delete(o.perIP, k)
				}
			}
			for k := range o.perIP {
				if len(o.perIP) < maxIPLimiters {
					break
				}
				delete(o.perIP, k)
			}
		}
		lim = o.cfg.RatePerIP.limiter()
		o.perIP[ip] = lim
	}
	o.mu.Unlock()
	if !lim.Allow() {
		return fmt.Errorf("on-demand order for %s refused: client %s is over its rate (%d per %v)", name, ip, o.cfg.RatePerIP.N, o.cfg.RatePerIP.Per)
	}
	if !o.global.Allow() {
		return fmt.Errorf("on-demand order for %s refused: over the global rate (%d per %v)", name, o.cfg.Rate.N, o.cfg.Rate.Per)
	}
	return nil
}

func matchAllow(patterns []string, name string) bool {
	for _, p := range patterns {
		if p == name {
			return true
		}
		if suffix, ok := strings.CutPrefix(p, "*"); ok && strings.HasSuffix(name, suffix) && len(name) > len(suffix) {
			return true
		}
	}
	return false
}

// decide is certmagic's DecisionFunc: configured hosts are always allowed
// (their renewals pass through here too), others by the on-demand policy.
func (a *ACME) decide(ctx context.Context, name string) error {
	name = normalizeName(name)
	if a.managed[name] {
		return nil
	}
	return a.onDemand.decide(ctx, name, helloIP(ctx))
}

func helloIP(ctx context.Context) string {
	if hello, ok := ctx.Value(certmagic.ClientHelloInfoCtxKey).(*tls.ClientHelloInfo); ok {
		return clientIP(hello)
	}
	return ""
}
