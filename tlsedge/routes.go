package tlsedge

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
)

// routeTable maps a request's host and path to an app. It is built once
// per configuration snapshot and only read afterwards, so lookups take no
// lock. Order: exact host, then a "*.example.com" wildcard (one label, as
// in certificates), then the longest path prefix on a segment boundary
// ("/api" matches "/api" and "/api/x", never "/apix"). The host "*"
// catches every host nothing else matches (on-demand TLS's custom domains).
type routeTable struct {
	exact map[string][]route
	wild  map[string][]route // keyed by the wildcard's parent, "example.com"
	any   []route
}

type route struct {
	prefix string
	app    http.Handler
}

func newRouteTable() *routeTable {
	return &routeTable{exact: map[string][]route{}, wild: map[string][]route{}}
}

// add registers an app for a host pattern and path prefix. Callers have
// validated both (config.Validate), including uniqueness.
func (t *routeTable) add(host, prefix string, app http.Handler) {
	r := route{prefix: strings.TrimSuffix(prefix, "/"), app: app}
	if host == config.AnyHost {
		t.any = sortRoutes(append(t.any, r))
		return
	}
	m, key := t.exact, host
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		m, key = t.wild, rest
	}
	m[key] = sortRoutes(append(m[key], r))
}

// sortRoutes puts the longest prefix first, so the first match is the most
// specific.
func sortRoutes(rs []route) []route {
	sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	return rs
}

// lookupResult says why a lookup found nothing: the status to answer.
type lookupResult int

const (
	routeFound       lookupResult = iota
	routeUnknownHost              // 421: this gateway serves no such site
	routeNoPath                   // 404: the site exists, the path does not
)

// match returns the app for a Host header value and a URL path.
func (t *routeTable) match(hostport, path string) (http.Handler, lookupResult) {
	host := canonicalHost(hostport)
	rs, ok := t.exact[host]
	if !ok {
		if i := strings.IndexByte(host, '.'); i > 0 {
			rs, ok = t.wild[host[i+1:]]
		}
	}
	if !ok && t.any != nil {
		rs, ok = t.any, true
	}
	if !ok {
		return nil, routeUnknownHost
	}
	for _, r := range rs {
		if pathHasPrefix(path, r.prefix) {
			return r.app, routeFound
		}
	}
	return nil, routeNoPath
}

// pathHasPrefix reports whether path is prefix or lies below it. prefix
// has no trailing slash; "" is the root and matches everything.
func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/' || prefix == ""
}

// canonicalHost strips a port and a trailing dot and lower-cases the name,
// allocating only when the name has upper-case letters.
func canonicalHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") { // [v6]:port
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// route sends a request to its app, chosen on the normalised path (so a
// route on /admin is not missed by /%61dmin or /x/../admin), or answers
// 421 for an unknown host and 404 for an unknown path. The app's own
// chain then normalises the path the backend sees (path_normalize).
func (snap *snapshot) route(w http.ResponseWriter, r *http.Request) {
	app, res := snap.routes.match(r.Host, routingPath(r))
	switch res {
	case routeFound:
		app.ServeHTTP(w, r)
		return
	case routeUnknownHost:
		// RFC 9110 15.5.20: this server does not serve that authority.
		filter.MarkGenerated(w)
		writePage(w, http.StatusMisdirectedRequest, "No site here", "This gateway serves no site for this host name.")
	default:
		filter.MarkGenerated(w)
		writePage(w, http.StatusNotFound, "Not found", "There is nothing at this path.")
	}
	snap.logLocal(r, res)
	markServed(w)
}

// logLocal records a request answered by tlsedge itself.
func (snap *snapshot) logLocal(r *http.Request, res lookupResult) {
	if snap.access == nil {
		return
	}
	status := http.StatusNotFound
	if res == routeUnknownHost {
		status = http.StatusMisdirectedRequest
	}
	e := accessEntry{Time: time.Now(), ClientIP: clientIP(r), Method: r.Method, Host: r.Host, Path: r.URL.Path, Status: status}
	if r.TLS != nil {
		e.TLS = r.TLS.Version
	}
	snap.access.Log(&e)
}

// routingPath is the path a request is routed on: its normal form (with
// %2F kept, so that only the app decides whether it is refused).
func routingPath(r *http.Request) string {
	path := r.URL.Path
	if np, err := filter.NormalizePathWith(r.URL.EscapedPath(), filter.PathNormConfig{AllowEncodedSlash: true}); err == nil && np != path {
		if u, err := url.PathUnescape(np); err == nil {
			path = u
		}
	}
	return path
}
