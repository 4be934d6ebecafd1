package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/tlsedge"
)

// demoListen is where the demo serves: loopback only, a port that needs
// no root.
const demoListen = "127.0.0.1:8443"

// runDemo starts three demo backends inside the process and one sticky app
// in front of them, with the local CA: no file, no root, no network.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var listen, stateDir string
	fs := pflag.NewFlagSet("tlsedge demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&listen, "listen", demoListen, "HTTPS listen `ADDRESS`")
	fs.StringVar(&stateDir, "state-dir", "", "`DIR` for the local CA and sticky keys (default as for run)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}

	var backends []config.Backend
	for i, name := range []string{"demo-1", "demo-2", "demo-3"} {
		addr, stop, err := startDemoBackend(name, demoColors[i])
		if err != nil {
			fmt.Fprintf(stderr, "tlsedge demo: backend %s: %v\n", name, err)
			return exitFailed
		}
		defer stop()
		backends = append(backends, config.Backend{Addr: addr, ID: name})
	}
	getenv, uid := defaultEnv()
	cfg := &config.Config{
		Listen:     listen,
		HTTPListen: config.Off,
		StateDir:   stateDir,
		Log:        config.Log{AccessLog: "stdout"},
		Apps: []config.App{{
			Name:     "demo",
			Hosts:    []string{"localhost", "127.0.0.1"},
			Backends: backends,
			Sticky:   &config.Sticky{},
		}},
	}
	cfg.Normalize(config.DefaultStateDir(getenv, uid))
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "tlsedge demo: %v\n", err)
		return exitUsage
	}
	log := newLogger(cfg.Log, stderr)
	srv, err := tlsedge.New(cfg, tlsedge.Options{Log: log, AccessLog: stdout})
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge demo: %v\n", err)
		return exitFailed
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintf(stderr, "tlsedge demo: %v (is another demo running? try --listen 127.0.0.1:9443)\n", err)
		return exitFailed
	}
	_, port, _ := net.SplitHostPort(srv.TLSAddr().String())
	root := filepath.Join(cfg.StateDir, "ca", "root.crt")
	url := "https://localhost:" + port + "/"
	fmt.Fprintf(stdout, `
tlsedge demo is running: one sticky app in front of three backends (demo-1, demo-2, demo-3).

  Open:  %s   (your browser will warn until you trust the local CA: tlsedge trust)
  Try:   curl --cacert %s %s
  Sticky: curl --cacert %s -c /tmp/tlsedge-demo.jar -b /tmp/tlsedge-demo.jar %s
          (run it again: the same backend answers every time)

Press Ctrl-C to stop.

`, url, root, url, root, url)
	if err := srv.Serve(ctx); err != nil {
		log.WithError(err).Error("demo stopped")
		return exitFailed
	}
	return exitOK
}

var demoColors = []string{"#2b6cb0", "#2f855a", "#c05621"}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>tlsedge demo — {{.Name}}</title>
<style>body{font:17px system-ui,sans-serif;max-width:40em;margin:3em auto;color:#222}
.b{display:inline-block;padding:.2em .6em;border-radius:.3em;color:#fff;background:{{.Color}}}
code{background:#f3f3f3;padding:.1em .3em}</style></head>
<body>
<h1>Answered by <span class="b" id="backend">{{.Name}}</span></h1>
<p>This backend has answered <b id="count">{{.Count}}</b> request(s) since tlsedge started.</p>
<p>Reload the page: you stay on <b>{{.Name}}</b>, because tlsedge set a signed, encrypted
sticky cookie (<code>tlsedge_sticky</code>) naming this backend. Delete the cookie, or open a
private window, and tlsedge balances you again (weighted round robin over three backends).</p>
<p>What the backend received from tlsedge:</p>
<ul>
<li>Host: <code>{{.Host}}</code></li>
<li>X-Forwarded-For: <code>{{.XFF}}</code></li>
<li>X-Forwarded-Proto: <code>{{.Proto}}</code></li>
<li>Forwarded: <code>{{.Forwarded}}</code></li>
</ul>
</body></html>
`))

// startDemoBackend serves the demo page on a free loopback port.
func startDemoBackend(name, color string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var count atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Demo-Backend", name)
		demoPage.Execute(w, map[string]any{ //nolint:errcheck // the client went away
			"Name": name, "Color": color, "Count": count.Add(1),
			"Host": r.Host, "XFF": r.Header.Get("X-Forwarded-For"),
			"Proto": r.Header.Get("X-Forwarded-Proto"), "Forwarded": r.Header.Get("Forwarded"),
		})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck
	}, nil
}
