package tlsedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
)

// Client certificates (mutual TLS) are asked for per host: TLS knows
// the host (SNI) only, so every app of a host must agree on client_auth
// and client_ca. The chain is verified by us, in VerifyConnection,
// against the current CA bundle and CRLs (re-read when they change), so
// a changed file applies without a new tls.Config; crypto/tls only
// collects the certificate (RequireAnyClientCert or RequestClientCert).
// VerifyConnection runs on resumed handshakes too: a certificate revoked
// since the session began is refused at resumption.
//
// A request is trusted with the certificate only when it reached its app
// on a connection whose SNI named a host with the same policy: a client
// that shakes hands for one host and sends Host: for another gets 421,
// never another app's trust.

// clientAuth is one host's policy.
type clientAuth struct {
	required bool
	caFile   string
	ca       *certs.ClientCA
	log      *logrus.Entry
}

// clientAuthTable maps host patterns to policies. Every app's hosts are
// in it, nil for an app without client_auth, so that a name finds the
// policy of the app routing would choose: exact, then wildcard, then the
// catch-all app (config.AnyHost, a key of exact).
type clientAuthTable struct {
	exact    map[string]*clientAuth
	wildcard map[string]*clientAuth // key: ".example.com" for *.example.com
	all      []*clientAuth
	poll     time.Duration // how often the files are checked (0: certs' default)
}

func (t *clientAuthTable) lookup(sni string) *clientAuth {
	if t == nil || len(t.all) == 0 {
		return nil
	}
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	if p, ok := t.exact[sni]; ok {
		return p
	}
	if i := strings.IndexByte(sni, '.'); i > 0 {
		if p, ok := t.wildcard[sni[i:]]; ok {
			return p
		}
	}
	return t.exact[config.AnyHost]
}

// compileClientAuth builds the table of the apps with client_auth; apps
// that share a host must agree. Bundles shared by several apps are read
// once.
func compileClientAuth(apps []config.App, log *logrus.Entry) (*clientAuthTable, map[string]*clientAuth, error) {
	t := &clientAuthTable{exact: map[string]*clientAuth{}, wildcard: map[string]*clientAuth{}}
	byApp := map[string]*clientAuth{}
	byHost := map[string]string{} // host -> policy key, to find disagreements
	loaded := map[string]*clientAuth{}
	for i := range apps {
		a := &apps[i]
		key := a.ClientAuth + "|" + a.ClientCA + "|" + strings.Join(a.ClientCRL, ",")
		for _, h := range a.Hosts {
			if other, ok := byHost[h]; ok && other != key {
				return nil, nil, &config.FieldError{App: a.Name, Field: "client_auth", Value: a.ClientAuth,
					Err: fmt.Errorf("host %s is served by another app with other client_auth/client_ca/client_crl settings; TLS asks for a certificate per host, so they must agree", h)}
			}
			byHost[h] = key
		}
		if a.ClientAuth == "" {
			for _, h := range a.Hosts { // nil: no policy, not the wildcard's or the catch-all's
				if strings.HasPrefix(h, "*.") {
					t.wildcard[h[1:]] = nil
				} else {
					t.exact[h] = nil
				}
			}
			continue
		}
		p := loaded[key]
		if p == nil {
			ca, err := certs.LoadClientCA(a.ClientCA, a.ClientCRL)
			if err != nil {
				return nil, nil, &config.FieldError{App: a.Name, Field: "client_ca", Value: a.ClientCA, Err: err}
			}
			p = &clientAuth{required: a.ClientAuth == config.ClientAuthRequired, caFile: a.ClientCA, ca: ca, log: log}
			loaded[key] = p
			t.all = append(t.all, p)
		}
		byApp[a.Name] = p
		for _, h := range a.Hosts {
			if strings.HasPrefix(h, "*.") {
				t.wildcard[h[1:]] = p
			} else {
				t.exact[h] = p
			}
		}
	}
	return t, byApp, nil
}

// watch re-reads the bundles and CRLs until ctx ends.
func (t *clientAuthTable) watch(ctx context.Context) {
	for _, p := range t.all {
		go p.ca.Watch(ctx, t.poll, func(err error) {
			p.log.WithError(err).WithField("client_ca", p.caFile).Error("client CA or CRL reload failed; the previous ones stay in use")
		})
	}
}

// tlsConfig is base with this policy: crypto/tls collects the
// certificate, verify checks it.
func (p *clientAuth) tlsConfig(base *tls.Config, hello *tls.ClientHelloInfo) *tls.Config {
	c := base.Clone()
	c.ClientAuth = tls.RequestClientCert
	if p.required {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	sni := hello.ServerName
	client := ""
	if hello.Conn != nil {
		client = hello.Conn.RemoteAddr().String()
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		err := p.ca.VerifyConnection(cs)
		if err != nil {
			p.log.WithFields(logrus.Fields{"host": sni, "client": client, "reason": err.Error()}).Warn("client certificate refused")
		}
		return err
	}
	return c
}

// clientCertFor returns the filter.ClientCert leaf function of an app:
// the connection's certificate when the connection was made for a host
// of the app's policy (p nil: the app asks for none, and no certificate
// is passed on).
func clientCertFor(p *clientAuth, table *clientAuthTable) func(r *http.Request) *x509.Certificate {
	if p == nil {
		return func(*http.Request) *x509.Certificate { return nil }
	}
	return func(r *http.Request) *x509.Certificate {
		if r.TLS == nil || table.lookup(r.TLS.ServerName) != p {
			return nil
		}
		return filter.PeerLeaf(r)
	}
}

// sameClientAuth answers 421 to a request that reached an app with a
// client-certificate policy over a connection made for a host with
// another (or none): the client must open a connection for this host.
func sameClientAuth(next http.Handler, p *clientAuth, table *clientAuthTable) http.Handler {
	if p == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || table.lookup(r.TLS.ServerName) != p {
			filter.MarkGenerated(w)
			writePage(w, http.StatusMisdirectedRequest, "Wrong connection", "This site needs a client certificate of its own: open a connection for its host name.")
			return
		}
		if p.required && len(r.TLS.PeerCertificates) == 0 {
			filter.MarkGenerated(w)
			writePage(w, http.StatusForbidden, "Certificate required", "This site needs a client certificate.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logMissing logs a handshake refused because a host that requires a
// client certificate got none: crypto/tls refuses it before
// VerifyConnection runs, so the reason would otherwise go unsaid.
func (t *clientAuthTable) logMissing(sni, client string, err error) {
	p := t.lookup(sni)
	if p == nil || !p.required || !strings.Contains(err.Error(), "didn't provide a certificate") {
		return
	}
	p.log.WithFields(logrus.Fields{"host": sni, "client": client, "reason": "no client certificate presented"}).Warn("client certificate refused")
}
