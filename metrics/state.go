package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BackendState is one backend as the server sees it at scrape time.
type BackendState struct {
	App, Backend string
	Up           bool
	InFlight     int64
	Weight       int
	// AdminState is the operator's setting (upstream's "ready", "drain",
	// "maint"); exported as tlsedge_backend_admin_state{state}=1.
	// Empty exports nothing. Keep the set of values small and fixed.
	AdminState string
	// ConnsNew and ConnsReused count the backend connections requests got:
	// dialled, and idle keep-alive ones taken again. Counters; they may
	// start again from zero after a reload that replaced the backend's
	// connection pool (Prometheus reads that as a counter reset).
	ConnsNew, ConnsReused uint64
}

// QueueState is one app's request queue at scrape time. upstream queues
// per app (not per backend), so the queue has its own source.
type QueueState struct {
	App      string
	Waiting  int64 // requests waiting now
	Capacity int   // the configured bound (QueueConfig.Len)
}

// CertState is the certificate served for one configured name.
type CertState struct {
	Name, Issuer string
	NotAfter     time.Time
}

// LogSinkState is the running total of lines a log sink dropped. Dropped
// must only grow (the server keeps it across reloads): it is a counter.
// Sink names the log, the label's value: the server reports "access" and
// "process" (--log-output).
type LogSinkState struct {
	Sink    string
	Dropped uint64
}

// SetStateSource sets the func called at each scrape for the state of
// every backend: health, in-flight requests, weight, admin state. f runs
// on the scraping goroutine, concurrently with requests, so it must only
// read (atomics, an immutable snapshot); it may be called again later to
// replace the source (a reload), or with nil to remove it. A backend
// listed twice is exported once (the first row).
func (m *Metrics) SetStateSource(f func() []BackendState) {
	if m != nil {
		m.stateSrc.Store(&f)
	}
}

// SetQueueSource sets the func called at each scrape for every app's
// queue, under the same contract as SetStateSource.
func (m *Metrics) SetQueueSource(f func() []QueueState) {
	if m != nil {
		m.queueSrc.Store(&f)
	}
}

// SetCertSource sets the func called at each scrape for the certificate
// of every configured name (not of names met on demand: that would let
// clients grow the label set), under the same contract as SetStateSource.
func (m *Metrics) SetCertSource(f func() []CertState) {
	if m != nil {
		m.certSrc.Store(&f)
	}
}

// SetLogSource sets the func called at each scrape for the dropped-line
// totals of the log sinks, under the same contract as SetStateSource.
func (m *Metrics) SetLogSource(f func() []LogSinkState) {
	if m != nil {
		m.logSrc.Store(&f)
	}
}

// load returns the source p holds, or nil.
func load[F any](p *atomic.Pointer[F]) F {
	var zero F
	if f := p.Load(); f != nil {
		return *f
	}
	return zero
}

// scrapeCollector exports the live gauges of m (connections, streams) and
// whatever the server's sources report, at scrape time.
type scrapeCollector struct {
	m *Metrics
}

var (
	descConnsActive = desc(docConnsActive)
	descStreams     = desc(docStreams)
	descUp          = desc(docUp)
	descInFlight    = desc(docInFlight)
	descWeight      = desc(docWeight)
	descAdmin       = desc(docAdmin)
	descQueueLen    = desc(docQueueLen)
	descQueueCap    = desc(docQueueCap)
	descCertExpiry  = desc(docCertExpiry)
	descLogDropped  = desc(docLogDropped)
	descBackendConn = desc(docBackendConns)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descConnsActive, descStreams, descUp, descInFlight, descWeight, descAdmin,
		descQueueLen, descQueueCap, descCertExpiry, descLogDropped, descBackendConn,
	} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	for i := range m.connsActive {
		emit(ch, descConnsActive, prometheus.GaugeValue, float64(m.connsActive[i].Load()), protoNames[i])
	}
	emit(ch, descStreams, prometheus.GaugeValue, float64(m.streamsActive.Load()))

	if f := load(&m.stateSrc); f != nil {
		seen := make(map[[2]string]bool)
		for _, s := range f() {
			k := [2]string{s.App, s.Backend}
			if seen[k] {
				continue
			}
			seen[k] = true
			up := 0.0
			if s.Up {
				up = 1
			}
			emit(ch, descUp, prometheus.GaugeValue, up, s.App, s.Backend)
			emit(ch, descInFlight, prometheus.GaugeValue, float64(s.InFlight), s.App, s.Backend)
			emit(ch, descWeight, prometheus.GaugeValue, float64(s.Weight), s.App, s.Backend)
			if s.AdminState != "" {
				emit(ch, descAdmin, prometheus.GaugeValue, 1, s.App, s.Backend, s.AdminState)
			}
			emit(ch, descBackendConn, prometheus.CounterValue, float64(s.ConnsNew), s.App, s.Backend, "new")
			emit(ch, descBackendConn, prometheus.CounterValue, float64(s.ConnsReused), s.App, s.Backend, "reused")
		}
	}
	if f := load(&m.queueSrc); f != nil {
		seen := make(map[string]bool)
		for _, q := range f() {
			if seen[q.App] {
				continue
			}
			seen[q.App] = true
			emit(ch, descQueueLen, prometheus.GaugeValue, float64(q.Waiting), q.App)
			emit(ch, descQueueCap, prometheus.GaugeValue, float64(q.Capacity), q.App)
		}
	}
	if f := load(&m.certSrc); f != nil {
		now := m.now()
		seen := make(map[[2]string]bool)
		for _, cs := range f() {
			k := [2]string{cs.Name, cs.Issuer}
			if seen[k] {
				continue
			}
			seen[k] = true
			emit(ch, descCertExpiry, prometheus.GaugeValue, cs.NotAfter.Sub(now).Seconds(), cs.Name, cs.Issuer)
		}
	}
	if f := load(&m.logSrc); f != nil {
		seen := make(map[string]bool)
		for _, l := range f() {
			if seen[l.Sink] {
				continue
			}
			seen[l.Sink] = true
			emit(ch, descLogDropped, prometheus.CounterValue, float64(l.Dropped), l.Sink)
		}
	}
}

// emit sends a constant metric, or an invalid one carrying the error (the
// scrape then reports it) instead of panicking.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	cm, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		cm = prometheus.NewInvalidMetric(d, err)
	}
	ch <- cm
}
