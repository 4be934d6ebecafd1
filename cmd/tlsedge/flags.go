package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tlsedge/tlsedge/config"
)

// flagValues are the raw command-line values; apply turns them into the
// one configuration model, over whatever the file said.
type flagValues struct {
	configFile    string
	apps          []string
	tcp           []string
	listen        string
	httpListen    string
	certs         []string
	keys          []string
	certDir       string
	stateDir      string
	stickyKeyFile string
	logLevel      string
	logFormat     string
	accessLog     string
	accessFormat  string
	logOutput     string

	acmeEmail, acmeCA, acmeCARoot   string
	acmeEABKeyID, acmeEABHMAC       string
	acmeNoHTTP01, acmeNoTLSALPN01   bool
	storage                         string
	onDemand                        bool
	onDemandAllow                   []string
	onDemandAsk                     string
	onDemandAskCache                string
	onDemandRate, onDemandRatePerIP string
	importAutocert                  string

	frontend        frontendFlags
	pidFile         string
	shutdownTimeout string
	shutdownDelay   string
	admin           string
	adminTokenFile  string
	clusterID       string
	clusterAdmin    bool
}

// newFlagSet declares every flag of run and check. The README's flag
// reference is checked against this set by a test, so add a flag here and
// there together.
func newFlagSet(name string, v *flagValues) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVarP(&v.configFile, "config", "c", "", "YAML configuration `FILE`; flags override it")
	// StringArray, not StringSlice: an --app value contains commas.
	fs.StringArrayVarP(&v.apps, "app", "a", nil, "an app, repeatable: HOST[/PATH]=BACKEND[*WEIGHT][,BACKEND...][;OPTION...] (`SPEC`)")
	fs.StringArrayVar(&v.tcp, "tcp", nil, "a TCP service (stunnel mode), repeatable: LISTEN=BACKEND[,BACKEND...][;OPTION...] (`SPEC`)")
	fs.StringVar(&v.listen, "listen", "", "HTTPS listen `ADDRESS` (default \""+config.DefaultListen+"\")")
	fs.StringVar(&v.httpListen, "http-listen", "", "plain-HTTP listen `ADDRESS` that redirects to HTTPS, or \"off\" (default \""+config.DefaultHTTPListen+"\")")
	fs.StringArrayVar(&v.certs, "cert", nil, "PEM certificate chain `FILE` (repeatable, pairs with --key in order)")
	fs.StringArrayVar(&v.keys, "key", nil, "PEM private key `FILE` (repeatable, pairs with --cert in order)")
	fs.StringVar(&v.certDir, "cert-dir", "", "`DIR` of certificates: NAME.crt + NAME.key, or cert and key in one NAME.pem")
	fs.StringVar(&v.acmeEmail, "acme-email", "", "ACME account `EMAIL`; turns on automatic certificates (tls=auto) for every app without files")
	fs.StringVar(&v.acmeCA, "acme-ca", "", "ACME CA: letsencrypt, staging, zerossl or a directory `URL` (default letsencrypt)")
	fs.StringVar(&v.acmeCARoot, "acme-ca-root", "", "PEM `FILE` of roots to trust for the ACME CA's own HTTPS (a private or test CA)")
	fs.StringVar(&v.acmeEABKeyID, "acme-eab-kid", "", "external account binding key `ID` (ZeroSSL, commercial CAs)")
	fs.StringVar(&v.acmeEABHMAC, "acme-eab-hmac", "", "external account binding HMAC `KEY`, base64url")
	fs.BoolVar(&v.acmeNoHTTP01, "acme-disable-http01", false, "do not answer HTTP-01 challenges on --http-listen")
	fs.BoolVar(&v.acmeNoTLSALPN01, "acme-disable-tlsalpn01", false, "do not answer TLS-ALPN-01 challenges on --listen")
	fs.StringVar(&v.storage, "storage", "", "where ACME certificates, accounts and locks live, and what instances share (sticky and ticket keys): redis://[user:pass@]host:port/db or rediss://... (`URL`; default files in STATE_DIR/acme)")
	fs.BoolVar(&v.onDemand, "on-demand", false, "obtain certificates at the first handshake for names no app lists (needs --on-demand-allow or --on-demand-ask)")
	fs.StringArrayVar(&v.onDemandAllow, "on-demand-allow", nil, "on-demand names: NAME or *.DOMAIN (any name below DOMAIN), repeatable (`PATTERN`)")
	fs.StringVar(&v.onDemandAsk, "on-demand-ask", "", "on-demand: ask `URL`?domain=NAME&ip=CLIENT; a 200 allows the name")
	fs.StringVar(&v.onDemandAskCache, "on-demand-ask-cache", "", "how long an ask answer, allowed or refused, is kept (`DURATION`, default "+config.DefaultAskCache.String()+")")
	fs.StringVar(&v.onDemandRate, "on-demand-rate", "", "on-demand orders overall, N/DURATION (`RATE`, default "+config.DefaultOnDemandRate.String()+")")
	fs.StringVar(&v.onDemandRatePerIP, "on-demand-rate-per-ip", "", "on-demand orders per client IP, N/DURATION (`RATE`, default "+config.DefaultOnDemandRatePerIP.String()+")")
	fs.StringVar(&v.importAutocert, "import-autocert", "", "x/crypto/acme/autocert cache `DIR` to import at start-up: its certificates are served and renewed, not ordered again")
	fs.StringVar(&v.stateDir, "state-dir", "", "`DIR` for generated state: local CA, sticky keys (default $XDG_STATE_HOME/tlsedge, /var/lib/tlsedge for root)")
	fs.StringVar(&v.stickyKeyFile, "sticky-key-file", "", "sticky-cookie keys `FILE`, one per line, the first signs (default STATE_DIR/sticky.keys, generated once)")
	fs.StringVar(&v.logLevel, "log-level", "", "`LEVEL`: debug, info, warn, error (default info)")
	fs.StringVar(&v.logFormat, "log-format", "", "`FORMAT`: text or json (default: text on a terminal, json otherwise)")
	fs.StringVar(&v.accessLog, "access-log", "", "access log: a `FILE`, stdout, off, syslog://HOST:PORT, syslog+tcp://HOST:PORT or unixgram:///dev/log (default stdout)")
	fs.StringVar(&v.accessFormat, "access-format", "", "access log `FORMAT`: text, json, common, combined or a template like '{client_ip} {status} {duration_ms}' (default text; json with --log-format json)")
	fs.StringVar(&v.logOutput, "log-output", "", "process log `DEST`: stderr, a file, syslog://HOST:PORT, syslog+tcp://HOST:PORT or unixgram:///dev/log (default stderr)")
	v.frontend.register(fs)
	fs.StringVar(&v.admin, "admin", "", "admin listener `ADDRESS`: status page, JSON API, /metrics, or \"off\" (default \""+config.DefaultAdmin+"\")")
	fs.StringVar(&v.clusterID, "cluster-id", "", "this instance's `NAME` among the instances sharing a redis:// --storage (default: host name, pid, random suffix)")
	fs.BoolVar(&v.clusterAdmin, "cluster-admin-sync", false, "apply backend drain/maint/weight changes made on one instance to every instance sharing the redis:// --storage")
	fs.StringVar(&v.adminTokenFile, "admin-token-file", "", "`FILE` holding the token the admin API's changes require (without it the API is read-only)")
	fs.StringVar(&v.shutdownDelay, "shutdown-delay", "", "at a stop, keep serving this long while /healthz answers 503, for the balancer in front (`DURATION`, default 0)")
	fs.StringVar(&v.shutdownTimeout, "shutdown-timeout", "", "how long requests in flight get to finish at a stop or a binary upgrade (`DURATION`, default 10s)")
	fs.StringVar(&v.pidFile, "pid-file", "", "write the serving process's PID to `FILE` (for kill -HUP to reload, kill -USR2 to upgrade the binary)")
	return fs
}

// loadConfig builds the effective configuration: the file (if any), then
// every flag that was given, then defaults. It does not validate.
func loadConfig(fs *pflag.FlagSet, v *flagValues, getenv func(string) string, uid int) (*config.Config, error) {
	cfg := &config.Config{}
	if v.configFile != "" {
		c, err := config.Load(v.configFile)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	set := func(name string, dst *string, val string) {
		if fs.Changed(name) {
			*dst = val
		}
	}
	set("listen", &cfg.Listen, v.listen)
	set("http-listen", &cfg.HTTPListen, v.httpListen)
	set("cert-dir", &cfg.TLS.CertDir, v.certDir)
	set("state-dir", &cfg.StateDir, v.stateDir)
	set("sticky-key-file", &cfg.StickyKeyFile, v.stickyKeyFile)
	set("log-level", &cfg.Log.Level, v.logLevel)
	set("log-format", &cfg.Log.Format, v.logFormat)
	set("access-log", &cfg.Log.AccessLog, v.accessLog)
	set("access-format", &cfg.Log.AccessFormat, v.accessFormat)
	set("log-output", &cfg.Log.Output, v.logOutput)
	set("acme-email", &cfg.TLS.ACME.Email, v.acmeEmail)
	set("acme-ca", &cfg.TLS.ACME.CA, v.acmeCA)
	set("acme-ca-root", &cfg.TLS.ACME.CARoot, v.acmeCARoot)
	set("acme-eab-kid", &cfg.TLS.ACME.EABKeyID, v.acmeEABKeyID)
	set("acme-eab-hmac", &cfg.TLS.ACME.EABHMAC, v.acmeEABHMAC)
	set("storage", &cfg.Storage, v.storage)
	set("admin", &cfg.Admin, v.admin)
	set("admin-token-file", &cfg.AdminTokenFile, v.adminTokenFile)
	set("cluster-id", &cfg.Cluster.InstanceID, v.clusterID)
	if fs.Changed("cluster-admin-sync") {
		cfg.Cluster.AdminSync = v.clusterAdmin
	}
	set("on-demand-ask", &cfg.TLS.OnDemand.Ask, v.onDemandAsk)
	set("import-autocert", &cfg.TLS.ImportAutocert, v.importAutocert)
	if fs.Changed("acme-disable-http01") {
		cfg.TLS.ACME.DisableHTTP01 = v.acmeNoHTTP01
	}
	if fs.Changed("acme-disable-tlsalpn01") {
		cfg.TLS.ACME.DisableTLSALPN01 = v.acmeNoTLSALPN01
	}
	if fs.Changed("on-demand") {
		cfg.TLS.OnDemand.Enabled = v.onDemand
	}
	if fs.Changed("on-demand-allow") {
		cfg.TLS.OnDemand.Allow = v.onDemandAllow
	}
	if err := setParsed(fs, "on-demand-ask-cache", v.onDemandAskCache, &cfg.TLS.OnDemand.AskCache, config.ParseDuration); err != nil {
		return nil, err
	}
	if err := setParsed(fs, "on-demand-rate", v.onDemandRate, &cfg.TLS.OnDemand.Rate, config.ParseRate); err != nil {
		return nil, err
	}
	if err := setParsed(fs, "on-demand-rate-per-ip", v.onDemandRatePerIP, &cfg.TLS.OnDemand.RatePerIP, config.ParseRate); err != nil {
		return nil, err
	}

	if fs.Changed("cert") || fs.Changed("key") {
		if len(v.certs) != len(v.keys) {
			return nil, &config.FieldError{Field: "--cert/--key", Value: fmt.Sprintf("%d certs, %d keys", len(v.certs), len(v.keys)),
				Err: fmt.Errorf("give one --key for every --cert, in the same order")}
		}
		cfg.TLS.Certs = nil // flags replace the file's list
		for i := range v.certs {
			cfg.TLS.Certs = append(cfg.TLS.Certs, config.CertPair{Cert: v.certs[i], Key: v.keys[i]})
		}
	}
	// An --app replaces the file's app for the same host and path, and
	// adds itself otherwise.
	for _, spec := range v.apps {
		app, err := config.ParseApp(spec)
		if err != nil {
			return nil, err
		}
		replaced := false
		for i := range cfg.Apps {
			if sameRoute(&cfg.Apps[i], &app) {
				cfg.Apps[i], replaced = app, true
				break
			}
		}
		if !replaced {
			cfg.Apps = append(cfg.Apps, app)
		}
	}
	for _, spec := range v.tcp {
		svc, err := config.ParseTCP(spec)
		if err != nil {
			return nil, err
		}
		cfg.TCP = append(cfg.TCP, svc)
	}
	if err := setParsed(fs, "shutdown-delay", v.shutdownDelay, &cfg.ShutdownDelay, config.ParseDuration); err != nil {
		return nil, err
	}
	if err := setParsed(fs, "shutdown-timeout", v.shutdownTimeout, &cfg.ShutdownTimeout, config.ParseDuration); err != nil {
		return nil, err
	}
	if err := v.frontend.apply(fs, &cfg.Frontend); err != nil {
		return nil, err
	}
	cfg.Normalize(config.DefaultStateDir(getenv, uid))
	return cfg, nil
}

// setParsed sets a field from a flag that needs parsing, with the error
// naming the flag.
func setParsed[T any](fs *pflag.FlagSet, name, raw string, dst *T, parse func(string) (T, error)) error {
	if !fs.Changed(name) {
		return nil
	}
	v, err := parse(raw)
	if err != nil {
		return &config.FieldError{Field: "--" + name, Value: raw, Err: err}
	}
	*dst = v
	return nil
}

func sameRoute(a, b *config.App) bool {
	norm := func(p string) string {
		if p == "" {
			return "/"
		}
		return p
	}
	if norm(a.Path) != norm(b.Path) {
		return false
	}
	for _, h := range a.Hosts {
		for _, g := range b.Hosts {
			if strings.EqualFold(h, g) {
				return true
			}
		}
	}
	return false
}

const usageHead = `tlsedge — a TLS-terminating edge gateway: HTTPS in front of sticky backend pools.

Usage:
  tlsedge [run] [FLAGS]        serve (the default command)
  tlsedge demo                 try it: local CA, three demo backends, https://localhost:8443/
  tlsedge check [FLAGS]        validate flags and/or --config, print the effective configuration
  tlsedge trust [FLAGS]        print the local CA root and how to make clients trust it
  tlsedge certs [FLAGS]        list the ACME certificates in storage: names, issuer, expiry, renewal
  tlsedge reload [FLAGS]       reload the running instance's configuration through its admin API
  tlsedge explain URL [--method M] [--cookie C] [--header 'K: V'] [--from IP] [FLAGS]
                               what tlsedge would do with that request: app, filters, sticky, backend
  tlsedge version              print the version

Examples:
  # Try it, no setup, no root:
  tlsedge demo

  # One sticky app on port 443, certificates from the built-in local CA:
  tlsedge --app 'shop.example.com=10.0.0.5:8080,10.0.0.6:8080*2;sticky'

  # Your own certificates (chosen by SNI; reloaded when the files change):
  tlsedge --app 'shop.example.com=10.0.0.5:8080;sticky' \
          --cert /etc/tlsedge/shop.crt --key /etc/tlsedge/shop.key

  # Automatic certificates from Let's Encrypt (ports 80 and 443 reachable,
  # DNS pointing here; try --acme-ca staging first):
  tlsedge --acme-email ops@example.com --app 'shop.example.com=10.0.0.5:8080;sticky'

  # Several instances sharing certificates and ACME locks in Redis:
  tlsedge --acme-email ops@example.com --storage redis://10.0.0.9:6379/0 \
          --app 'shop.example.com=10.0.0.5:8080,10.0.0.6:8080;sticky'

  # Customers' own domains (SaaS): certificates at the first handshake,
  # only for names your service approves:
  tlsedge --acme-email ops@example.com --on-demand \
          --on-demand-ask http://127.0.0.1:9000/allowed --app '*=10.0.0.5:8080'

  # Several apps by host and path, certificates from a folder:
  tlsedge --app 'shop.example.com=10.0.0.5:8080,10.0.0.6:8080*2;sticky' \
          --app 'example.com/api=10.0.0.7:9000' --cert-dir /etc/tlsedge/certs

  # stunnel's job: TLS on :6380 in front of a plain Redis, and plain on
  # :5433 towards a TLS-only PostgreSQL (client mode):
  tlsedge --app ... --tcp ':6380=10.0.0.9:6379;hosts=cache.example.com'
  tlsedge --app ... --tcp '127.0.0.1:5433=db.example.com:5432;plain;backend_tls'

  # Sessions that end after 30 idle minutes or 12 hours at most:
  tlsedge --app 'shop.example.com=10.0.0.5:8080,10.0.0.6:8080;sticky=SHOPID;sticky_idle=30m;sticky_max_age=12h'

  # A configuration file, checked before use:
  tlsedge check --config /etc/tlsedge/tlsedge.yaml
  tlsedge --config /etc/tlsedge/tlsedge.yaml

Flags:
`

func printUsage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprint(w, usageHead)
	fmt.Fprint(w, fs.FlagUsages())
	fmt.Fprint(w, "  -h, --help                   show this help\n")
	fmt.Fprint(w, "\n--app options (each is also the field of the same name in the config file):\n")
	for _, o := range config.AppOptions() {
		fmt.Fprintf(w, "  %-25s %s\n", o.Syntax, o.Help)
	}
	fmt.Fprint(w, "\n--tcp options (each is also the field of the same name under tcp: in the config file):\n")
	for _, o := range config.TCPOptions() {
		fmt.Fprintf(w, "  %-25s %s\n", o.Syntax, o.Help)
	}
}

func defaultEnv() (func(string) string, int) { return os.Getenv, os.Getuid() }
