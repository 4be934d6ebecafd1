package acmetest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"time"
)

// newOrderPath is Pebble's new-order endpoint (wfe.newOrderPath); clients
// find it in the directory, the proxy matches on it.
const newOrderPath = "/order-plz"

// proxy is the TLS reverse proxy in front of Pebble's ACME listener. It
// exists because Pebble logs an order's ID but not its identifiers; as a
// bonus the ACME port is bound by this process from the start, so Start
// never races another process for it. While Pebble is stopped the proxy is
// closed too, so clients see connection refused, as from a CA that is
// down, rather than a 502; Restart binds the same port again.
type proxy struct {
	srv  *http.Server
	done chan struct{} // closed when Serve returned
}

// startProxy serves ln, forwarding to Pebble at backend with transport and
// recording accepted new-orders in j. It owns ln from here on.
func startProxy(ln net.Listener, backend string, transport http.RoundTripper, cert tls.Certificate, j *journal, aux *textLog) *proxy {
	target := &url.URL{Scheme: "https", Host: backend}
	errLog := log.New(lineSink(aux.addLine), "acmetest proxy: ", 0)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Pebble builds every URL it hands out from the Host header
			// and checks the JWS "url" against it (wfe.relativeEndpoint),
			// so it must see the host the client used.
			pr.Out.Host = pr.In.Host
		},
		Transport:      transport,
		ModifyResponse: func(resp *http.Response) error { return recordNewOrder(resp, j, errLog) },
		ErrorLog:       errLog,
	}
	p := &proxy{
		srv: &http.Server{
			Handler:           rp,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          errLog,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(p.done)
		// ErrServerClosed is how close ends it; anything else is logged.
		if err := p.srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			errLog.Printf("serve: %v", err)
		}
	}()
	return p
}

// close stops listening, drops every connection, in flight or idle, and
// waits for the serving goroutine.
func (p *proxy) close() {
	_ = p.srv.Close() // its only error is the listener's close error
	<-p.done
}

// recordNewOrder notes an order Pebble created. It never fails the
// response: a body it cannot read is logged and passed on as it was read.
func recordNewOrder(resp *http.Response, j *journal, errLog *log.Logger) error {
	req := resp.Request
	if req.Method != http.MethodPost || req.URL.Path != newOrderPath || resp.StatusCode != http.StatusCreated {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		errLog.Printf("read new-order response: %v", err)
		return nil
	}
	o, err := parseOrder(body, resp.Header.Get("Location"))
	if err != nil {
		errLog.Printf("new-order response: %v", err)
		return nil
	}
	j.addOrder(o)
	return nil
}

// parseOrder reads the order object of RFC 8555 section 7.1.3 that Pebble
// returns, and its ID from the Location URL (…/my-order/ID).
func parseOrder(body []byte, location string) (Order, error) {
	var doc struct {
		Identifiers []struct {
			Value string `json:"value"`
		} `json:"identifiers"`
		Profile  string `json:"profile"`
		Replaces string `json:"replaces"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return Order{}, fmt.Errorf("decode order: %w", err)
	}
	u, err := url.Parse(location)
	if err != nil || u.Path == "" {
		return Order{}, fmt.Errorf("order location %q: not a URL with a path", location)
	}
	o := Order{ID: path.Base(u.Path), Profile: doc.Profile, Replaces: doc.Replaces}
	for _, id := range doc.Identifiers {
		o.Names = append(o.Names, id.Value)
	}
	return o, nil
}

// lineSink adapts a line consumer to the io.Writer a log.Logger wants; the
// logger writes one whole line per call.
type lineSink func(string)

func (f lineSink) Write(p []byte) (int, error) {
	f(string(bytes.TrimSuffix(p, []byte("\n"))))
	return len(p), nil
}
