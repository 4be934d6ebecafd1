package tlsedge

import (
	"crypto/tls"
	"net/http"
	"strings"

	"github.com/tlsedge/tlsedge/config"
)

// /healthz, on the admin listener and on the plain-HTTP port, is for the
// layer in front (an L4 balancer, keepalived, a DNS health check): 200
// "ok" while this instance serves with its configuration and a certificate
// for every configured name; 503 and the reason while it starts, while a
// name still waits for its first certificate, and from the moment a stop
// begins (see shutdown_delay: the instance keeps serving for that long,
// so that the layer in front takes it out before a connection is refused).

// health says whether the instance should get traffic, and if not why.
func (s *Server) health() (bool, string) {
	switch {
	case s.draining.Load():
		return false, "draining: this instance is stopping"
	case !s.serving.Load():
		return false, "starting"
	}
	if missing := s.snap.Load().missingCertificates(); len(missing) > 0 {
		return false, "no certificate yet for " + strings.Join(missing, ", ")
	}
	return true, "ok"
}

// missingCertificates lists the configured exact names that have no
// certificate to present yet (an ACME order still running, or failing).
func (snap *snapshot) missingCertificates() []string {
	var out []string
	check := func(host string) {
		if strings.HasPrefix(host, "*") || host == "" {
			return
		}
		if snap.sources[host] == config.TLSAuto && snap.acme != nil {
			if snap.acme.Current(host) == nil {
				out = append(out, host)
			}
			return
		}
		if _, err := snap.certs.GetCertificate(&tls.ClientHelloInfo{ServerName: host}); err != nil {
			out = append(out, host)
		}
	}
	for _, a := range snap.cfg.Apps {
		for _, h := range a.Hosts {
			check(h)
		}
	}
	return out
}

// serveHealthz answers GET and HEAD /healthz.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	ok, reason := s.health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(reason + "\n")) // the status is the answer
	}
}

// withHealthz serves /healthz before next (the plain-HTTP redirector).
func (s *Server) withHealthz(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			s.serveHealthz(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
