package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Methods fold into this fixed set; anything else (CONNECT, TRACE, WebDAV,
// garbage from a client) is "other". HTTP methods are case-sensitive
// (RFC 9110 section 9.1), so "get" is "other" too.
var methodNames = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}

const numMethods = len(methodNames)

// Status codes fold into their class; anything outside 100-599 (net/http
// lets a backend send up to 999) is "other".
var classNames = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

const numClasses = len(classNames)

// noBackend is the backend label of requests no backend answered: refused
// by a filter, no backend available, or failed before a backend replied.
const noBackend = "none"

// methodIndex maps a method to its slot in methodNames. A switch over
// constants compiles to length and byte comparisons: no hashing.
func methodIndex(method string) int {
	switch method {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	}
	return numMethods - 1
}

func classIndex(status int) int {
	if status >= 100 && status <= 599 {
		return status/100 - 1
	}
	return numClasses - 1
}

// RefusalReason says why tlsedge answered a request itself. The set is
// fixed so that the reason label stays bounded.
type RefusalReason uint8

// Refusal reasons. The server maps each filter and upstream error to one;
// anything it cannot map is RefusedOther.
const (
	RefusedACL          RefusalReason = iota // an allow/deny rule
	RefusedRateLimit                         // a rate limit (429)
	RefusedMethod                            // a method not allowed
	RefusedBodySize                          // a request body over its limit
	RefusedLimits                            // header, URI or other request limits
	RefusedPath                              // a path rule (traversal, blocked prefix)
	RefusedClientCert                        // a client certificate missing or rejected
	RefusedQueueFull                         // the app's queue was full
	RefusedQueueTimeout                      // waited too long in the queue
	RefusedNoBackend                         // no backend up
	RefusedOther                             // anything else
	numRefusalReasons
)

var refusalNames = [numRefusalReasons]string{
	"acl", "rate_limit", "method", "body_size", "limits", "path",
	"client_cert", "queue_full", "queue_timeout", "no_backend", "other",
}

// String returns the reason's label value.
func (r RefusalReason) String() string {
	if r >= numRefusalReasons {
		return refusalNames[RefusedOther]
	}
	return refusalNames[r]
}

// ParseRefusalReason returns the reason whose label value is s, for a
// server that keeps reasons as strings; ok is false for an unknown s.
// Call it when compiling, not per request.
func ParseRefusalReason(s string) (r RefusalReason, ok bool) {
	for i, n := range refusalNames {
		if n == s {
			return RefusalReason(i), true
		}
	}
	return RefusedOther, false
}

// Sticky-session results, in the order of stickyNames.
const (
	stickyHit = iota
	stickyMiss
	stickyRepin
	numSticky
)

var stickyNames = [numSticky]string{"hit", "miss", "repin"}

// AppMetrics records the requests of one app. Its counters are bound to
// their label values when it is built, so its methods are an index and an
// atomic add. Safe for concurrent use; nil records nothing.
type AppMetrics struct {
	m        *Metrics
	name     string
	duration prometheus.Observer
	retries  prometheus.Counter
	refused  [numRefusalReasons]prometheus.Counter
	sticky   [numSticky]prometheus.Counter
	none     *BackendMetrics // requests no backend answered
}

// BackendMetrics records what concerns one backend of one app. Built by
// AppMetrics.Backend; safe for concurrent use; nil records nothing.
type BackendMetrics struct {
	requests  [numMethods][numClasses]prometheus.Counter
	ttfb      prometheus.Observer // nil for the "none" backend
	ejections prometheus.Counter  // nil for the "none" backend
}

// App returns the handle of app name. Call it when compiling a
// configuration: it binds every label value of the app (the refusal
// reasons, sticky results and method x class counters of requests no
// backend answered), which is the slow part. Calling it again for the
// same name, as a reload does, returns a handle on the same series.
func (m *Metrics) App(name string) *AppMetrics {
	if m == nil {
		return nil
	}
	a := &AppMetrics{
		m:        m,
		name:     name,
		duration: m.duration.WithLabelValues(name),
		retries:  m.retries.WithLabelValues(name),
	}
	for i := range a.refused {
		a.refused[i] = m.refused.WithLabelValues(name, refusalNames[i])
	}
	for i := range a.sticky {
		a.sticky[i] = m.sticky.WithLabelValues(name, stickyNames[i])
	}
	a.none = a.newBackend(noBackend)
	return a
}

// Backend returns the handle of the backend id of a, binding its
// method x status class counters (48 series), its TTFB histogram and its
// ejection counter. Call it when compiling; id is the backend's stable
// identity (its address as configured), never anything a client chose;
// "none" is taken by requests no backend answered.
func (a *AppMetrics) Backend(id string) *BackendMetrics {
	if a == nil {
		return nil
	}
	b := a.newBackend(id)
	b.ttfb = a.m.ttfb.WithLabelValues(a.name, id)
	b.ejections = a.m.ejections.WithLabelValues(a.name, id)
	return b
}

func (a *AppMetrics) newBackend(id string) *BackendMetrics {
	b := new(BackendMetrics)
	for mi := range b.requests {
		for ci := range b.requests[mi] {
			b.requests[mi][ci] = a.m.requests.WithLabelValues(a.name, id, methodNames[mi], classNames[ci])
		}
	}
	return b
}

// DeleteBackend drops the series of backend id of a: the server calls it
// once a reload has swapped in a snapshot without that backend.
func (a *AppMetrics) DeleteBackend(id string) {
	if a == nil {
		return
	}
	l := prometheus.Labels{"app": a.name, "backend": id}
	a.m.requests.DeletePartialMatch(l)
	a.m.ttfb.DeletePartialMatch(l)
	a.m.ejections.DeletePartialMatch(l)
}

// ObserveRequest records one answered request: it counts it under
// backend (nil: "none"), method and status class, and observes total (the
// request's whole duration) and, when backend is not nil and ttfb > 0,
// the backend's time to first byte. backend must come from a's Backend.
// A request tlsedge refused is observed here too (with a nil backend),
// besides Refused.
func (a *AppMetrics) ObserveRequest(method string, status int, backend *BackendMetrics, total, ttfb time.Duration) {
	if a == nil {
		return
	}
	b := backend
	if b == nil {
		b = a.none
	}
	b.requests[methodIndex(method)][classIndex(status)].Inc()
	a.duration.Observe(total.Seconds())
	if ttfb > 0 && b.ttfb != nil {
		b.ttfb.Observe(ttfb.Seconds())
	}
}

// Refused counts a request answered by tlsedge itself for reason r.
func (a *AppMetrics) Refused(r RefusalReason) {
	if a == nil {
		return
	}
	if r >= numRefusalReasons {
		r = RefusedOther
	}
	a.refused[r].Inc()
}

// Retry counts one more attempt of a request on another backend.
func (a *AppMetrics) Retry() {
	if a != nil {
		a.retries.Inc()
	}
}

// StickyHit counts a request sent to the backend its cookie pinned.
func (a *AppMetrics) StickyHit() {
	if a != nil {
		a.sticky[stickyHit].Inc()
	}
}

// StickyMiss counts a request with no valid pin that was given one.
func (a *AppMetrics) StickyMiss() {
	if a != nil {
		a.sticky[stickyMiss].Inc()
	}
}

// StickyRepin counts a request whose pinned backend was unavailable and
// that was pinned to another.
func (a *AppMetrics) StickyRepin() {
	if a != nil {
		a.sticky[stickyRepin].Inc()
	}
}

// Ejected counts the backend's removal from rotation by passive health.
func (b *BackendMetrics) Ejected() {
	if b != nil && b.ejections != nil {
		b.ejections.Inc()
	}
}
