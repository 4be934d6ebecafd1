package filter

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// IPACLConfig lists the client networks an app accepts or refuses. With
// Allow set, only clients inside it are served; Deny refuses clients
// inside it (checked first). Addresses are the real client address:
// r.RemoteAddr as the server set it.
type IPACLConfig struct {
	Allow, Deny []string // CIDR prefixes or single addresses
}

// IPACL returns next behind the lists; refused clients get 403. The
// lists are compiled once; a check is a scan of prefixes (operators list
// a handful), no lock and no allocation.
func IPACL(next http.Handler, cfg IPACLConfig) (http.Handler, error) {
	allow, err := parsePrefixes(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("allow: %w", err)
	}
	deny, err := parsePrefixes(cfg.Deny)
	if err != nil {
		return nil, fmt.Errorf("deny: %w", err)
	}
	if len(allow) == 0 && len(deny) == 0 {
		return next, nil
	}
	return &ipACL{next: next, allow: allow, deny: deny}, nil
}

// ParsePrefix reads "10.0.0.0/8" or a single address ("192.0.2.7", which
// is a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix like 10.0.0.0/8", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

type ipACL struct {
	next        http.Handler
	allow, deny []netip.Prefix
}

func (f *ipACL) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.permits(clientAddr(r.RemoteAddr)) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		MarkGenerated(w)
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("403 forbidden\n")) //nolint:errcheck // the client may be gone
		return
	}
	f.next.ServeHTTP(w, r)
}

func (f *ipACL) permits(a netip.Addr) bool {
	if !a.IsValid() {
		return len(f.allow) == 0 // an address we cannot read is in no list
	}
	for _, p := range f.deny {
		if p.Contains(a) {
			return false
		}
	}
	if len(f.allow) == 0 {
		return true
	}
	for _, p := range f.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr parses "ip:port" (or a bare ip) without allocating.
func clientAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(remote)
	return a.Unmap()
}
