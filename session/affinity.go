package session

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Affinity without a cookie: the key a consistent hash maps to a backend,
// taken from the client's address, a header, a cookie or a URL parameter.
// Every instance that hashes the same key the same way sends the user to
// the same backend, with no shared state and nothing to sign.

// AffinityKey returns a request's key, and false when it has none (the
// header, cookie or parameter is absent): such a request is balanced
// without affinity.
type AffinityKey func(r *http.Request) (string, bool)

// NewAffinityKey builds the key function for kind "ip", "header",
// "cookie" or "param" and the header, cookie or parameter name.
func NewAffinityKey(kind, name string) (AffinityKey, error) {
	switch kind {
	case "ip":
		return clientIPKey, nil
	case "header":
		canon := http.CanonicalHeaderKey(name)
		return func(r *http.Request) (string, bool) {
			v := r.Header[canon]
			if len(v) == 0 || v[0] == "" {
				return "", false
			}
			return v[0], true
		}, nil
	case "cookie":
		return func(r *http.Request) (string, bool) {
			c, err := r.Cookie(name)
			if err != nil || c.Value == "" {
				return "", false
			}
			return c.Value, true
		}, nil
	case "param":
		return func(r *http.Request) (string, bool) { return queryParam(r.URL.RawQuery, name) }, nil
	}
	return nil, fmt.Errorf("session: unknown affinity key %q (want ip, header, cookie or param)", kind)
}

// clientIPKey is the peer's address without the port.
func clientIPKey(r *http.Request) (string, bool) {
	a := r.RemoteAddr
	if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.IndexByte(a, ']') < i {
		a = a[:i]
	}
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	return a, a != ""
}

// queryParam finds one parameter without building url.Values: the first
// occurrence, unescaped.
func queryParam(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		if uv, err := url.QueryUnescape(v); err == nil && uv != "" {
			return uv, true
		}
		return "", false
	}
	return "", false
}
