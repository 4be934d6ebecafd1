package admin

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ExplainRequest describes a request for POST /api/explain: what
// `tlsedge explain URL [--method M] [--cookie C] [--header 'K: V']...
// [--from IP]` asks.
type ExplainRequest struct {
	URL    string `json:"url"`
	Method string `json:"method,omitempty"` // default GET
	Cookie string `json:"cookie,omitempty"`
	// Headers are "Name: value" lines.
	Headers []string `json:"headers,omitempty"`
	// From is the client address (default 192.0.2.1, a documentation
	// address no rule is likely to name).
	From string `json:"from,omitempty"`
}

// Request builds the request the server looks at. Its errors name the
// bad value and say what was expected.
func (q ExplainRequest) Request() (*http.Request, error) {
	u, err := url.Parse(q.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%q is not a URL like https://host/path", q.URL)
	}
	method := q.Method
	if method == "" {
		method = http.MethodGet
	}
	r, err := http.NewRequest(strings.ToUpper(method), q.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("method %q: %w", method, err)
	}
	r.RequestURI = u.RequestURI()
	from := q.From
	if from == "" {
		from = "192.0.2.1"
	}
	if net.ParseIP(from) == nil {
		return nil, fmt.Errorf("--from %q is not an IP address", from)
	}
	r.RemoteAddr = net.JoinHostPort(from, "50000")
	if q.Cookie != "" {
		r.Header.Set("Cookie", q.Cookie)
	}
	for _, h := range q.Headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: want 'Name: value'", h)
		}
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return r, nil
}
