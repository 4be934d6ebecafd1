package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Filters are an app's settings of the filter chain beyond the defaults
// that model.go lists with the app (headers, methods, lists, body size).
// They are inlined into App: in the file they sit beside the other app
// fields, on the command line they are --app options of the same names.
type Filters struct {
	// RateLimit is requests per client IP, like 100/1s or 6000/1m
	// (default: none); RateBurst is how many may come at once (default:
	// the count of RateLimit).
	RateLimit string `yaml:"rate_limit,omitempty"`
	RateBurst int    `yaml:"rate_burst,omitempty"`
	// RequestHeaders and ResponseHeaders are header rules: set:NAME=VALUE,
	// add:NAME=VALUE, del:NAME, rename:OLD=NEW. Values may use
	// {client_ip}, {client_port}, {tls_version}, {tls_cipher}, {sni},
	// {request_id}, {host}, {method}, {path} and {scheme}.
	RequestHeaders  []string `yaml:"request_headers,omitempty"`
	ResponseHeaders []string `yaml:"response_headers,omitempty"`
	// ErrorPages are files answered instead of tlsedge's own error
	// bodies, by status; ReplaceBackendErrors also replaces the bodies
	// of backend answers with those statuses.
	ErrorPages           map[int]string `yaml:"error_pages,omitempty"`
	ReplaceBackendErrors bool           `yaml:"replace_backend_errors,omitempty"`
	// Subst are body substitutions of text responses: FROM=>TO
	// (literal) or ~REGEXP=>TO; SubstTypes the content types they apply
	// to (default: HTML, CSS, JavaScript, JSON, XML, plain text).
	Subst      []string `yaml:"subst,omitempty"`
	SubstTypes []string `yaml:"subst_types,omitempty"`
	// Compress lists the encodings offered, in order of preference
	// (zstd, gzip); empty: no compression. CompressMin is the smallest
	// body compressed (default 1K); CompressTypes the content types.
	Compress      []string `yaml:"compress,omitempty"`
	CompressMin   string   `yaml:"compress_min,omitempty"`
	CompressTypes []string `yaml:"compress_types,omitempty"`
	// BufferRequests reads request bodies up to this size (memory, then
	// a temporary file) before a backend is chosen; BufferResponses reads
	// responses up to this size at backend speed and frees the backend
	// before the client has them. Default: off (streaming).
	BufferRequests  string `yaml:"buffer_requests,omitempty"`
	BufferResponses string `yaml:"buffer_responses,omitempty"`
	// PathNormalize: on (default; %2F, %5C and %00 refused), off, or
	// allow_encoded_slash (normalise but keep %2F).
	PathNormalize string `yaml:"path_normalize,omitempty"`
	// MaxURL, MaxHeaderFields and MaxCookie bound a request (defaults 8K,
	// 100, 8K): beyond them 414 or 431, nothing forwarded.
	MaxURL          string `yaml:"max_url,omitempty"`
	MaxHeaderFields int    `yaml:"max_header_fields,omitempty"`
	MaxCookie       string `yaml:"max_cookie,omitempty"`
	// ClientAuth asks clients of the app's hosts for a certificate
	// (mutual TLS): required or optional (a certificate, if presented,
	// must verify). ClientCA is the PEM bundle it must chain to,
	// ClientCRL the revocation lists; all are re-read when they change.
	ClientAuth string   `yaml:"client_auth,omitempty"`
	ClientCA   string   `yaml:"client_ca,omitempty"`
	ClientCRL  []string `yaml:"client_crl,omitempty"`
	// Chain "off" takes every filter out of the app's path except the
	// stripping of forged client-certificate headers: for measuring what
	// the chain costs, never for serving.
	Chain string `yaml:"chain,omitempty"`
}

// Path normalisation modes.
const (
	PathNormOn                = "on"
	PathNormAllowEncodedSlash = "allow_encoded_slash"
)

// Client certificate modes.
const (
	ClientAuthRequired = "required"
	ClientAuthOptional = "optional"
)

// filterOptions are the --app options of Filters.
func filterOptions() []option[App] {
	return []option[App]{
		{"rate_limit", "rate_limit=N/DURATION", "requests per client IP, like 100/1s; more get 429 with Retry-After (default: none)", stringOption(func(a *App) *string { return &a.RateLimit })},
		{"rate_burst", "rate_burst=N", "requests a client may send at once within rate_limit (default: its N)", intOption(func(a *App) *int { return &a.RateBurst })},
		{"request_header", "request_header=OP:NAME[=VALUE]", "a request header rule, repeatable: set:, add:, del:, rename:OLD=NEW; values may use {client_ip}, {tls_version}, {sni}, {request_id}, ...", appendOption(func(a *App) *[]string { return &a.RequestHeaders })},
		{"response_header", "response_header=OP:NAME[=VALUE]", "a response header rule, repeatable, as request_header", appendOption(func(a *App) *[]string { return &a.ResponseHeaders })},
		{"error_page", "error_page=STATUS:FILE", "answer tlsedge's errors with this status with FILE's content, repeatable", func(a *App, v string, has bool) error {
			code, file, ok := strings.Cut(v, ":")
			n, err := strconv.Atoi(code)
			if !has || !ok || err != nil || file == "" {
				return errors.New("want error_page=STATUS:FILE, like error_page=503:/etc/tlsedge/503.html")
			}
			if a.ErrorPages == nil {
				a.ErrorPages = map[int]string{}
			}
			a.ErrorPages[n] = file
			return nil
		}},
		{"replace_backend_errors", "replace_backend_errors", "error_page files also replace the bodies of backend answers with those statuses (default: backends' own error pages pass)", flagOption(func(a *App) *bool { return &a.ReplaceBackendErrors })},
		{"subst", "subst=FROM=>TO|~REGEXP=>TO", "replace text in HTML, CSS, JavaScript, JSON, XML and plain-text responses, streaming; repeatable, applied in order", appendOption(func(a *App) *[]string { return &a.Subst })},
		{"subst_types", "subst_types=TYPE[,TYPE...]", "the content types subst applies to", listOption(func(a *App) *[]string { return &a.SubstTypes })},
		{"compress", "compress[=zstd,gzip]", "compress responses for clients that accept it, in this order of preference (compress alone: zstd,gzip)", func(a *App, v string, has bool) error {
			if !has || v == "" {
				a.Compress = []string{"zstd", "gzip"}
				return nil
			}
			a.Compress = strings.Split(strings.ToLower(v), ",")
			return nil
		}},
		{"compress_min", "compress_min=SIZE", "smallest body compressed (default 1K)", stringOption(func(a *App) *string { return &a.CompressMin })},
		{"compress_types", "compress_types=TYPE[,TYPE...]", "content types compressed (default text/*, JSON, JavaScript, XML, SVG, WebAssembly)", listOption(func(a *App) *[]string { return &a.CompressTypes })},
		{"buffer_requests", "buffer_requests=SIZE", "read request bodies up to SIZE (memory, then a temporary file) before taking a backend, so slow uploads do not hold one; larger bodies get 413", stringOption(func(a *App) *string { return &a.BufferRequests })},
		{"buffer_responses", "buffer_responses=SIZE", "read responses up to SIZE at backend speed, freeing the backend before a slow client has read them", stringOption(func(a *App) *string { return &a.BufferResponses })},
		{"path_normalize", "path_normalize=on|off|allow_encoded_slash", "normalise paths before routing and rules: dot segments, //, needless %-escapes; %2F, %5C, %00 refused (default on)", stringOption(func(a *App) *string { return &a.PathNormalize })},
		{"max_url", "max_url=SIZE", "longest URL; longer gets 414 (default 8K)", stringOption(func(a *App) *string { return &a.MaxURL })},
		{"max_header_fields", "max_header_fields=N", "most request header fields; more get 431 (default 100)", intOption(func(a *App) *int { return &a.MaxHeaderFields })},
		{"max_cookie", "max_cookie=SIZE", "largest Cookie header, all lines together; larger gets 431 (default 8K)", stringOption(func(a *App) *string { return &a.MaxCookie })},
		{"client_auth", "client_auth=required|optional", "ask the app's clients for a certificate (mutual TLS), verified against client_ca; its subject, SANs, serial and fingerprint go to the backend in X-Client-Cert-* headers", stringOption(func(a *App) *string { return &a.ClientAuth })},
		{"client_ca", "client_ca=FILE", "PEM bundle of the CAs client certificates must chain to (re-read when it changes)", stringOption(func(a *App) *string { return &a.ClientCA })},
		{"chain", "chain=on|off", "off: no filter at all in front of the app (to measure the chain's cost; never for serving)", stringOption(func(a *App) *string { return &a.Chain })},
		{"client_crl", "client_crl=FILE[,FILE...]", "certificate revocation lists (PEM or DER) checked for client certificates (re-read when they change)", listOption(func(a *App) *[]string { return &a.ClientCRL })},
	}
}

func appendOption(field func(*App) *[]string) func(*App, string, bool) error {
	return func(a *App, v string, has bool) error {
		if !has || v == "" {
			return errors.New("needs a value")
		}
		*field(a) = append(*field(a), v)
		return nil
	}
}

func listOption(field func(*App) *[]string) func(*App, string, bool) error {
	return func(a *App, v string, has bool) error {
		if !has || v == "" {
			return errors.New("needs a list, like A,B")
		}
		*field(a) = strings.Split(v, ",")
		return nil
	}
}

func flagOption(field func(*App) *bool) func(*App, string, bool) error {
	return func(a *App, v string, has bool) error {
		if has {
			return errors.New("takes no value")
		}
		*field(a) = true
		return nil
	}
}

// normalizeFilters fills the defaults that `tlsedge check` prints.
func (a *App) normalizeFilters() {
	if a.PathNormalize == "" {
		a.PathNormalize = PathNormOn
	}
	a.ClientAuth = strings.ToLower(a.ClientAuth)
}

// validateFilters checks what can be checked without the filters
// themselves; the rule syntaxes (header rules, substitutions, error page
// files) are compiled, and their errors reported, when the server builds
// the app's chain.
func (a *App) validateFilters(add func(field, value string, err error)) {
	if a.RateLimit != "" {
		if _, err := ParseRate(a.RateLimit); err != nil {
			add("rate_limit", a.RateLimit, err)
		}
	} else if a.RateBurst != 0 {
		add("rate_burst", strconv.Itoa(a.RateBurst), errors.New("rate_burst needs rate_limit"))
	}
	for _, f := range []struct{ name, v string }{
		{"compress_min", a.CompressMin}, {"buffer_requests", a.BufferRequests},
		{"buffer_responses", a.BufferResponses}, {"max_url", a.MaxURL}, {"max_cookie", a.MaxCookie},
	} {
		if f.v == "" {
			continue
		}
		if n, err := ParseSize(f.v); err != nil {
			add(f.name, f.v, err)
		} else if n <= 0 {
			add(f.name, f.v, errors.New("must be more than 0"))
		}
	}
	for code, file := range a.ErrorPages {
		if code < 400 || code > 599 {
			add("error_pages", strconv.Itoa(code), errors.New("an error page is for a status from 400 to 599"))
		}
		if file == "" {
			add("error_pages", strconv.Itoa(code), errors.New("needs a file"))
		}
	}
	for i, e := range a.Compress {
		if e != "zstd" && e != "gzip" {
			add("compress["+strconv.Itoa(i)+"]", e, errors.New("want zstd or gzip"))
		}
	}
	switch a.Chain {
	case "", "on", Off:
	default:
		add("chain", a.Chain, errors.New("want on or off"))
	}
	switch a.PathNormalize {
	case PathNormOn, Off, PathNormAllowEncodedSlash:
	default:
		add("path_normalize", a.PathNormalize, fmt.Errorf("want %s, %s or %s", PathNormOn, Off, PathNormAllowEncodedSlash))
	}
	switch a.ClientAuth {
	case "":
		if a.ClientCA != "" || len(a.ClientCRL) > 0 {
			add("client_ca", a.ClientCA, errors.New("client_ca and client_crl need client_auth=required or client_auth=optional"))
		}
	case ClientAuthRequired, ClientAuthOptional:
		if a.ClientCA == "" {
			add("client_ca", "", errors.New("client_auth needs client_ca=FILE, the CAs client certificates must chain to"))
		}
	default:
		add("client_auth", a.ClientAuth, errors.New("want required or optional"))
	}
}
