// Package metrics exposes tlsedge's Prometheus metrics on its own registry.
//
// The server builds one Metrics at startup and, at config compile time, one
// AppMetrics per app and one BackendMetrics per backend: every label lookup
// happens then. What the request path calls afterwards is an array index
// and an atomic add (ObserveRequest, Refused, Retry, Sticky*, Ejected,
// ConnOpened, ...): no map lookup, no string built, no allocation, no lock
// shared by requests.
//
// Values that already live elsewhere as state (backend health, in-flight
// requests, queue length, certificate expiry, dropped log lines) are not
// mirrored per request: the server hands over funcs that are called at
// scrape time (SetStateSource, SetQueueSource, SetCertSource,
// SetLogSource).
//
// Every label set is bounded: methods fold into a fixed set, statuses into
// classes, refusal and handshake-failure reasons into fixed enums; apps,
// backends and certificate names come from the configuration, never from a
// client (no client IP, no path).
//
// A nil *Metrics, *AppMetrics or *BackendMetrics is valid and records
// nothing, so a server built without metrics needs no branches.
package metrics

import (
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics owns tlsedge's registry and the metric families on it. It is
// safe for concurrent use; build it with New.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	now     func() time.Time // the clock of certificate expiry; tests replace it

	requests   *prometheus.CounterVec   // app, backend, method, status_class
	duration   *prometheus.HistogramVec // app
	ttfb       *prometheus.HistogramVec // app, backend
	retries    *prometheus.CounterVec   // app
	ejections  *prometheus.CounterVec   // app, backend
	refused    *prometheus.CounterVec   // app, reason
	sticky     *prometheus.CounterVec   // app, result
	connsTotal *prometheus.CounterVec   // proto
	streams    prometheus.Counter
	handshakes *prometheus.CounterVec // version
	hsFailures *prometheus.CounterVec // reason

	// Counters of the connection path, bound once in New.
	connOpened [numProtos]prometheus.Counter
	hsOK       [numVersions]prometheus.Counter
	hsFail     [numHSReasons]prometheus.Counter

	// Live gauges, read by the scrape collector: one atomic add per event
	// rather than a gauge's compare-and-swap loop on float bits.
	connsActive   [numProtos]atomic.Int64
	streamsActive atomic.Int64

	// Scrape-time sources, swapped by Set*Source at any time.
	stateSrc atomic.Pointer[func() []BackendState]
	queueSrc atomic.Pointer[func() []QueueState]
	certSrc  atomic.Pointer[func() []CertState]
	logSrc   atomic.Pointer[func() []LogSinkState]
}

// latencyBuckets suit an edge proxy: from half a millisecond (a cached or
// refused answer) to ten seconds (a slow backend, just short of the usual
// timeouts).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// scrapeConcurrency bounds concurrent scrapes; more are answered 503 rather
// than letting a misconfigured scraper pile up collections.
const scrapeConcurrency = 4

// New builds the registry with every tlsedge family, the Go runtime and
// the process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now}
	m.requests = counterVec(docRequests)
	m.duration = histogramVec(docDuration)
	m.ttfb = histogramVec(docTTFB)
	m.retries = counterVec(docRetries)
	m.ejections = counterVec(docEjections)
	m.refused = counterVec(docRefused)
	m.sticky = counterVec(docSticky)
	m.connsTotal = counterVec(docConnsTotal)
	m.streams = prometheus.NewCounter(prometheus.CounterOpts{Name: docStreamsTotal.Name, Help: docStreamsTotal.Help})
	m.handshakes = counterVec(docHandshakes)
	m.hsFailures = counterVec(docHSFailures)
	for i := range m.connOpened {
		m.connOpened[i] = m.connsTotal.WithLabelValues(protoNames[i])
	}
	for i := range m.hsOK {
		m.hsOK[i] = m.handshakes.WithLabelValues(versionNames[i])
	}
	for i := range m.hsFail {
		m.hsFail[i] = m.hsFailures.WithLabelValues(hsReasonNames[i])
	}

	// The set registered here is fixed and every test of the package
	// registers it, so MustRegister can only fail on a change that no test
	// has run; that is the one panic this package keeps.
	m.reg.MustRegister(
		m.requests, m.duration, m.ttfb, m.retries, m.ejections, m.refused,
		m.sticky, m.connsTotal, m.streams, m.handshakes, m.hsFailures,
		&scrapeCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: scrapeConcurrency,
	})
	return m
}

// Handler serves the registry in the Prometheus exposition formats
// (text by default, others by content negotiation).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Registry returns the registry, for tests and for a caller that gathers
// without HTTP. Registering more collectors on it is allowed.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// DeleteApp drops every series of app: the server calls it once a reload
// has swapped in a snapshot without that app. Handles of the old snapshot
// keep working, but what they record is no longer exported.
func (m *Metrics) DeleteApp(app string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"app": app}
	for _, v := range []*prometheus.MetricVec{
		m.requests.MetricVec, m.duration.MetricVec, m.ttfb.MetricVec, m.retries.MetricVec,
		m.ejections.MetricVec, m.refused.MetricVec, m.sticky.MetricVec,
	} {
		v.DeletePartialMatch(l)
	}
}

// MetricDoc describes one metric family tlsedge exports, for the README
// table and for tests that keep the two in step.
type MetricDoc struct {
	Name   string
	Type   string // "counter", "gauge" or "histogram"
	Labels []string
	Help   string
}

var (
	docRequests     = MetricDoc{"tlsedge_requests_total", "counter", []string{"app", "backend", "method", "status_class"}, "HTTP requests answered, by app, backend (\"none\" when no backend answered), method (GET HEAD POST PUT DELETE PATCH OPTIONS or other) and status class (1xx..5xx or other)."}
	docDuration     = MetricDoc{"tlsedge_request_duration_seconds", "histogram", []string{"app"}, "Time from the request's arrival to the end of its response, by app."}
	docTTFB         = MetricDoc{"tlsedge_backend_ttfb_seconds", "histogram", []string{"app", "backend"}, "Time from sending a request to a backend to the first byte of its response."}
	docRetries      = MetricDoc{"tlsedge_retries_total", "counter", []string{"app"}, "Requests sent again to another backend after a failed attempt."}
	docEjections    = MetricDoc{"tlsedge_backend_ejections_total", "counter", []string{"app", "backend"}, "Times a backend was taken out of rotation by passive health checks."}
	docRefused      = MetricDoc{"tlsedge_requests_refused_total", "counter", []string{"app", "reason"}, "Requests answered by tlsedge itself without reaching a backend, by reason (acl, rate_limit, method, body_size, limits, path, client_cert, queue_full, queue_timeout, no_backend, other)."}
	docSticky       = MetricDoc{"tlsedge_sticky_total", "counter", []string{"app", "result"}, "Sticky-session lookups: hit (pinned backend used), miss (no valid pin, a new one set), repin (pinned backend unavailable, moved)."}
	docConnsTotal   = MetricDoc{"tlsedge_connections_total", "counter", []string{"proto"}, "Client connections accepted, by protocol (h1, h2, tcp or other)."}
	docConnsActive  = MetricDoc{"tlsedge_connections_active", "gauge", []string{"proto"}, "Client connections open now, by protocol (h1, h2, tcp or other)."}
	docStreamsTotal = MetricDoc{"tlsedge_http2_streams_total", "counter", nil, "HTTP/2 streams opened by clients."}
	docStreams      = MetricDoc{"tlsedge_http2_streams_active", "gauge", nil, "HTTP/2 streams open now."}
	docHandshakes   = MetricDoc{"tlsedge_tls_handshakes_total", "counter", []string{"version"}, "Completed TLS handshakes, by protocol version (1.0, 1.1, 1.2, 1.3 or other)."}
	docHSFailures   = MetricDoc{"tlsedge_tls_handshake_failures_total", "counter", []string{"reason"}, "Failed TLS handshakes, by reason (timeout, eof, not_tls, protocol_version, no_cipher, unknown_sni, bad_certificate, client_cert, other)."}
	docUp           = MetricDoc{"tlsedge_backend_up", "gauge", []string{"app", "backend"}, "1 if the backend is healthy, 0 if not."}
	docInFlight     = MetricDoc{"tlsedge_backend_in_flight_requests", "gauge", []string{"app", "backend"}, "Requests sent to the backend and not yet finished."}
	docWeight       = MetricDoc{"tlsedge_backend_weight", "gauge", []string{"app", "backend"}, "Configured (or slow-start) weight of the backend."}
	docAdmin        = MetricDoc{"tlsedge_backend_admin_state", "gauge", []string{"app", "backend", "state"}, "1 for the backend's administrative state (ready, drain or maint)."}
	docQueueLen     = MetricDoc{"tlsedge_queue_length", "gauge", []string{"app"}, "Requests waiting in the app's queue for a backend slot."}
	docQueueCap     = MetricDoc{"tlsedge_queue_capacity", "gauge", []string{"app"}, "Bound of the app's queue; a request beyond it is refused (queue_full)."}
	docCertExpiry   = MetricDoc{"tlsedge_certificate_expiry_seconds", "gauge", []string{"name", "issuer"}, "Seconds until the certificate served for a configured name expires (negative once expired)."}
	docBackendConns = MetricDoc{"tlsedge_backend_connections_total", "counter", []string{"app", "backend", "kind"}, "Backend connections requests got: new (dialled) or reused (an idle keep-alive connection). HTTP/1.1 backends; h2/h2c pools report none."}
	docLogDropped   = MetricDoc{"tlsedge_log_lines_dropped_total", "counter", []string{"sink"}, "Log lines dropped because the sink fell behind."}
)

// Describe lists every tlsedge_* family with its type, labels and help,
// in a fixed order. The Go runtime (go_*) and process (process_*) families
// are not listed.
func Describe() []MetricDoc {
	docs := []MetricDoc{
		docRequests, docDuration, docTTFB, docRetries, docEjections, docRefused, docSticky,
		docConnsTotal, docConnsActive, docStreamsTotal, docStreams, docHandshakes, docHSFailures,
		docUp, docInFlight, docWeight, docAdmin, docBackendConns, docQueueLen, docQueueCap,
		docCertExpiry, docLogDropped,
	}
	for i := range docs {
		docs[i].Labels = slices.Clone(docs[i].Labels)
	}
	return docs
}

func counterVec(d MetricDoc) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

func histogramVec(d MetricDoc) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: latencyBuckets}, d.Labels)
}

func desc(d MetricDoc) *prometheus.Desc {
	return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)
}
