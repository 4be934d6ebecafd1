package filter

import (
	"net/http"
	"strings"
)

// DefaultMethods are the methods an app accepts unless told otherwise:
// TRACE (cross-site tracing reflects credentials) and CONNECT (a tunnel
// through the gateway) are not among them.
var DefaultMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

// Methods returns next behind a method allowlist (DefaultMethods when
// allow is nil): other methods get 405 with an Allow header, and never
// reach the backend.
func Methods(next http.Handler, allow []string) http.Handler {
	if allow == nil {
		allow = DefaultMethods
	}
	m := &methods{next: next, allowHeader: []string{strings.Join(allow, ", ")}}
	for _, a := range allow {
		m.allow = append(m.allow, strings.ToUpper(a))
	}
	return m
}

type methods struct {
	next        http.Handler
	allow       []string // a handful: a linear scan beats a map
	allowHeader []string
}

func (m *methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, a := range m.allow {
		if r.Method == a {
			m.next.ServeHTTP(w, r)
			return
		}
	}
	h := w.Header()
	h["Allow"] = m.allowHeader
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	MarkGenerated(w)
	w.WriteHeader(http.StatusMethodNotAllowed)
	w.Write([]byte("405 method not allowed\n")) //nolint:errcheck // the client may be gone
}
