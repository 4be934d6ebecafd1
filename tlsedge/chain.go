package tlsedge

import (
	"fmt"
	"net/http"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
)

// The filter chain, in the order a request meets it (README "The filter
// chain" documents it for operators).
//
// Before any filter, both servers refuse a request head over 64 KiB
// counted as HTTP/1.1 lines (431) and end a request body that pauses
// longer than body_timeout (h1parse.go, h1body.go; h2srv_headers.go,
// h2srv_body.go).
//
// For every request, before routing (frontChain):
//
//	real client address  X-Forwarded-For/Forwarded believed from trusted proxies only
//	frontend allow/deny  403
//	frontend rate limit  429 + Retry-After
//	route                on the normalised path (421, 404)
//
// Then per app (filterChain), outermost first:
//
//	request id           X-Request-Id, seen by everything after and the access log
//	error pages          replaces the bodies of tlsedge's errors (and the backend's, if asked),
//	                     the refusals below included; {request_id} filled in
//	allow/deny           403: a refused client costs an id, nothing more
//	rate limit           429 + Retry-After
//	client certificate   421 when the connection was made for another host's policy;
//	                     X-Client-Cert-* always stripped, set from a verified certificate
//	limits               414 URL, 431 header fields, 431 cookie
//	path normalisation   400 for %2F, %5C, %00, climbing above the root
//	header rules         request rules now, response rules when the head goes out
//	                     (after the defaults below, so an operator's rule has the last word)
//	response headers     hidden headers, HSTS, nosniff and security headers, backend URLs
//	methods              405
//	max body             413
//	request buffering    the whole body before a backend is taken (413 beyond)
//	compression          gzip/zstd of the final bytes
//	substitution         on the backend's uncompressed text
//	response buffering   frees the backend at its speed
//	serve                sticky cookie, balancer, proxy, access log
//
// Every filter is compiled here, once per snapshot; a bad rule or file
// fails the configuration with the app and option named, and a running
// configuration is never replaced by it.

// frontChain puts the frontend's filters in front of routing. With share
// set, its rate limit is handed to it to be counted across instances.
func frontChain(fe *config.Frontend, next http.Handler, share shareLimit) (http.Handler, error) {
	h := next
	if fe.RateLimit != "" {
		rl, err := rateLimitConfig(fe.RateLimit, fe.RateBurst)
		if err != nil {
			return nil, &config.FieldError{Field: "frontend.rate_limit", Value: fe.RateLimit, Err: err}
		}
		if h, err = rateLimit(h, rl, "frontend", share); err != nil {
			return nil, &config.FieldError{Field: "frontend.rate_limit", Value: fe.RateLimit, Err: err}
		}
	}
	h, err := filter.IPACL(h, filter.IPACLConfig{Allow: fe.Allow, Deny: fe.Deny})
	if err != nil {
		return nil, &config.FieldError{Field: "frontend.allow/deny", Err: err}
	}
	if len(fe.TrustedProxies) > 0 {
		if h, err = filter.RealIP(h, filter.RealIPConfig{Trusted: fe.TrustedProxies}); err != nil {
			return nil, &config.FieldError{Field: "frontend.trusted_proxies", Err: err}
		}
	} else {
		// Nobody's word on the client address is believed.
		if h, err = filter.RealIP(h, filter.RealIPConfig{}); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func rateLimitConfig(rate string, burst int) (filter.RateLimitConfig, error) {
	r, err := config.ParseRate(rate)
	if err != nil {
		return filter.RateLimitConfig{}, err
	}
	if burst == 0 {
		burst = r.N // 100/1m lets 100 come at once, then one every 0.6 s
	}
	return filter.RateLimitConfig{Rate: float64(r.N) / r.Per.D().Seconds(), Burst: burst}, nil
}

// appFilters are what an app's chain needs besides its configuration.
type appFilters struct {
	clientAuth *clientAuth      // the app's policy; nil: none
	table      *clientAuthTable // every host's policy
	share      shareLimit       // nil: rate limits are this instance's own
}

// shareLimit receives a rate limit to count across instances, by name.
type shareLimit func(name string, l *filter.RateLimiter)

// rateLimit is filter.RateLimit, shared when share is set.
func rateLimit(next http.Handler, cfg filter.RateLimitConfig, name string, share shareLimit) (http.Handler, error) {
	if share == nil {
		return filter.RateLimit(next, cfg)
	}
	h, l, err := filter.SharedRateLimit(next, cfg)
	if err == nil && l != nil {
		share(name, l)
	}
	return h, err
}

// filterChain puts an app's filters in front of next (see the table
// above). Errors name the option.
func filterChain(app *config.App, next http.Handler, deps appFilters) (http.Handler, error) {
	fail := func(field, value string, err error) error {
		return &config.FieldError{App: app.Name, Field: field, Value: value, Err: err}
	}
	if app.Chain == config.Off {
		return filter.ClientCert(next, filter.ClientCertConfig{Leaf: clientCertFor(deps.clientAuth, deps.table)}), nil
	}
	h := next
	var err error
	if app.BufferResponses != "" {
		n, _ := config.ParseSize(app.BufferResponses) // validated
		if h, err = filter.ResponseBuffer(h, filter.ResponseBufferConfig{Max: n}); err != nil {
			return nil, fail("buffer_responses", app.BufferResponses, err)
		}
	}
	if len(app.Subst) > 0 {
		cfg := filter.SubstConfig{Types: app.SubstTypes}
		for _, s := range app.Subst {
			rule, err := filter.ParseSubstRule(s)
			if err != nil {
				return nil, fail("subst", s, err)
			}
			cfg.Rules = append(cfg.Rules, rule)
		}
		if h, err = filter.Subst(h, cfg); err != nil {
			return nil, fail("subst", fmt.Sprint(app.Subst), err)
		}
	}
	if len(app.Compress) > 0 {
		cfg := filter.CompressConfig{Encodings: app.Compress, Types: app.CompressTypes}
		if app.CompressMin != "" {
			n, _ := config.ParseSize(app.CompressMin) // validated
			cfg.MinSize = int(n)
		}
		if h, err = filter.Compress(h, cfg); err != nil {
			return nil, fail("compress", fmt.Sprint(app.Compress), err)
		}
	}
	if app.BufferRequests != "" {
		n, _ := config.ParseSize(app.BufferRequests) // validated
		if h, err = filter.RequestBuffer(h, filter.RequestBufferConfig{Max: n}); err != nil {
			return nil, fail("buffer_requests", app.BufferRequests, err)
		}
	}
	var maxBody int64
	if app.MaxBody != "" {
		maxBody, _ = config.ParseSize(app.MaxBody) // validated
	}
	h = filter.Methods(filter.MaxBody(h, maxBody), app.Methods)
	h = filter.ResponseHeaders(h, responseHeadersConfig(app))
	if len(app.RequestHeaders) > 0 || len(app.ResponseHeaders) > 0 {
		var cfg filter.HeaderRulesConfig
		for _, s := range app.RequestHeaders {
			rule, err := filter.ParseHeaderRule(s)
			if err != nil {
				return nil, fail("request_headers", s, err)
			}
			cfg.Request = append(cfg.Request, rule)
		}
		for _, s := range app.ResponseHeaders {
			rule, err := filter.ParseHeaderRule(s)
			if err != nil {
				return nil, fail("response_headers", s, err)
			}
			cfg.Response = append(cfg.Response, rule)
		}
		if h, err = filter.HeaderRules(h, cfg); err != nil {
			return nil, fail("request_headers", "", err)
		}
	}
	if app.PathNormalize != config.Off {
		cfg := filter.PathNormConfig{AllowEncodedSlash: app.PathNormalize == config.PathNormAllowEncodedSlash}
		if h, err = filter.PathNorm(h, cfg); err != nil {
			return nil, fail("path_normalize", app.PathNormalize, err)
		}
	}
	lc := filter.LimitsConfig{MaxHeaderFields: app.MaxHeaderFields}
	if app.MaxURL != "" {
		n, _ := config.ParseSize(app.MaxURL) // validated
		lc.MaxURL = int(n)
	}
	if app.MaxCookie != "" {
		n, _ := config.ParseSize(app.MaxCookie) // validated
		lc.MaxCookieBytes = int(n)
	}
	if h, err = filter.Limits(h, lc); err != nil {
		return nil, fail("max_url", app.MaxURL, err)
	}
	h = filter.ClientCert(sameClientAuth(h, deps.clientAuth, deps.table), filter.ClientCertConfig{Leaf: clientCertFor(deps.clientAuth, deps.table)})
	if app.RateLimit != "" {
		rl, err := rateLimitConfig(app.RateLimit, app.RateBurst)
		if err != nil {
			return nil, fail("rate_limit", app.RateLimit, err)
		}
		if h, err = rateLimit(h, rl, "app:"+app.Name, deps.share); err != nil {
			return nil, fail("rate_limit", app.RateLimit, err)
		}
	}
	if h, err = filter.IPACL(h, filter.IPACLConfig{Allow: app.Allow, Deny: app.Deny}); err != nil {
		return nil, fail("allow/deny", "", err)
	}
	// Outside every filter that answers by itself (MarkGenerated), so that
	// their 403, 429, 421, 414, 431 and 400 get the pages too.
	if len(app.ErrorPages) > 0 {
		if h, err = filter.ErrorPages(h, filter.ErrorPagesConfig{Pages: app.ErrorPages, ReplaceBackend: app.ReplaceBackendErrors}); err != nil {
			return nil, fail("error_pages", "", err)
		}
	}
	if app.RequestID != config.Off {
		h = filter.RequestID(h)
	}
	return h, nil
}

// responseHeadersConfig is the response header filter of an app.
func responseHeadersConfig(app *config.App) filter.ResponseHeadersConfig {
	rc := filter.ResponseHeadersConfig{HSTSSubdomains: app.HSTSSubdomains, Remove: app.HideHeaders}
	for _, b := range app.Backends {
		if !b.SRV {
			rc.Backends = append(rc.Backends, b.Addr)
		}
	}
	if app.HSTS != config.Off {
		d, _ := config.ParseDuration(app.HSTS) // validated
		rc.HSTS = d.D()
	}
	// nosniff by default: a browser must not run a mislabelled upload
	// as a script. It breaks only responses with a wrong Content-Type;
	// response_header=del:X-Content-Type-Options removes it.
	rc.Set = map[string]string{"X-Content-Type-Options": "nosniff"}
	if app.SecurityHeaders {
		rc.Set = filter.SecurityHeaders()
	}
	if app.CSP != "" {
		rc.Set["Content-Security-Policy"] = app.CSP
	}
	return rc
}
