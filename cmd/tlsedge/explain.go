package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/tlsedge"
)

// tlsedge explain URL [--method M] [--cookie C] [--header 'K: V']... [--from IP]
// with the usual configuration flags: what tlsedge would do with that
// request under that configuration (tlsedge.Explain).

type explainArgs struct {
	url, method, cookie, from string
	headers                   []string
}

// splitExplainArgs takes explain's own arguments out of args, leaving the
// configuration flags for the usual flag set.
func splitExplainArgs(args []string) (explainArgs, []string, error) {
	ex := explainArgs{method: http.MethodGet, from: "192.0.2.1"}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		take := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "--method":
			ex.method, err = take()
		case "--cookie":
			ex.cookie, err = take()
		case "--from":
			ex.from, err = take()
		case "--header":
			var h string
			h, err = take()
			ex.headers = append(ex.headers, h)
		default:
			if ex.url == "" && (strings.HasPrefix(a, "https://") || strings.HasPrefix(a, "http://")) {
				ex.url = a
				continue
			}
			rest = append(rest, a)
		}
		if err != nil {
			return ex, nil, err
		}
	}
	if ex.url == "" {
		return ex, nil, errors.New("which request? give its URL, like tlsedge explain https://shop.example.com/cart --app ...")
	}
	return ex, rest, nil
}

func runExplain(cfg *config.Config, ex explainArgs, stdout, stderr io.Writer) int {
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "tlsedge: invalid configuration:\n%v\n", indent(err))
		return exitUsage
	}
	u, err := url.Parse(ex.url)
	if err != nil || u.Host == "" {
		fmt.Fprintf(stderr, "tlsedge explain: %q is not a URL like https://host/path\n", ex.url)
		return exitUsage
	}
	r, err := http.NewRequest(strings.ToUpper(ex.method), ex.url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge explain: %v\n", err)
		return exitUsage
	}
	r.RequestURI = u.RequestURI()
	if ip := net.ParseIP(ex.from); ip == nil {
		fmt.Fprintf(stderr, "tlsedge explain: --from %q is not an IP address\n", ex.from)
		return exitUsage
	}
	r.RemoteAddr = net.JoinHostPort(ex.from, "50000")
	if ex.cookie != "" {
		r.Header.Set("Cookie", ex.cookie)
	}
	for _, h := range ex.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(stderr, "tlsedge explain: --header %q: want 'Name: value'\n", h)
			return exitUsage
		}
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	log := logrus.New()
	log.Out = io.Discard
	lines, err := tlsedge.Explain(cfg, log, r)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitUsage
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return exitOK
}
