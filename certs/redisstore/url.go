package redisstore

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// urlForm is the shape New expects, for error messages.
const urlForm = "redis://[user:password@]host[:port][/db] or rediss://..."

// parseURL turns a redis:// or rediss:// URL into client options, and
// returns where the URL points without credentials, for String and errors.
//
// go-redis's ParseURL does the work; before it, we reject what it would
// accept but a certificate store should not: a missing host (go-redis
// silently uses localhost) and unix:// sockets. We also keep url.Parse's
// error from reaching the message, because it quotes the raw URL, password
// included.
func parseURL(rawURL string, rootCAs *x509.CertPool) (*redis.Options, string, error) {
	bad := func(err error) error {
		return fmt.Errorf("redis storage URL %q: %w", redact(rawURL), err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, "", bad(err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, "", bad(fmt.Errorf("scheme %q is not redis or rediss (want %s)", u.Scheme, urlForm))
	}
	if u.Hostname() == "" {
		return nil, "", bad(fmt.Errorf("missing host (want %s)", urlForm))
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, "", bad(err)
	}
	if rootCAs != nil {
		if o.TLSConfig == nil {
			return nil, "", bad(errors.New("TLSRootCAs is set but the URL is not rediss://"))
		}
		o.TLSConfig.RootCAs = rootCAs
	}
	// Fail fast when the server is away (go-redis would retry each command
	// 4 times, each dial 5 times: 2 s per call): callers fall back or retry
	// on their own. ?max_retries= and friends in the URL still win.
	if !u.Query().Has("max_retries") {
		o.MaxRetries = 1
	}
	o.DialerRetries = 1
	where := u.Scheme + "://" + o.Addr + "/" + strconv.Itoa(o.DB)
	return o, where, nil
}

// redact hides the password in a URL that may not parse. For one that
// parses, url.URL.Redacted does it; otherwise everything between the user
// name and the last '@' before the path is replaced. A URL without a
// password is returned as written (Redacted would normalize "redis://" to
// "redis:").
func redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		if _, has := u.User.Password(); has {
			return u.Redacted()
		}
		return rawURL
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		scheme, rest = "", rawURL
	} else {
		scheme += "://"
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return rawURL
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return rawURL
	}
	return scheme + user + ":xxxxx" + authority[at:] + path
}

// ClientOptions parses a redis:// or rediss:// URL as New does, for other
// users of the same server (the cluster state of tlsedge instances), and
// returns the go-redis options and where the URL points, without
// credentials. Errors never quote the password.
func ClientOptions(rawURL string) (*redis.Options, string, error) {
	return parseURL(rawURL, nil)
}
