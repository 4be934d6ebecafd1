package main

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/tlsedge/tlsedge/config"
)

// frontendFlags are the flags of config.Frontend: who may speak for a
// client, per-client limits, timeouts, and the lists and rate of all apps.
type frontendFlags struct {
	trustedProxies             []string
	maxConnsPerIP, maxHSPerIP  int
	handshakeTimeout           string
	headerTimeout, bodyTimeout string
	idleTimeout                string
	allow, deny                []string
	rateLimit                  string
	rateBurst                  int
}

func (f *frontendFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil, "proxies and load balancers whose PROXY protocol header and X-Forwarded-For are believed (`CIDR`,...); from anyone else they are dropped")
	fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 0, "open connections one client address may hold (`N`, default 1000; -1: no limit)")
	fs.IntVar(&f.maxHSPerIP, "max-handshakes-per-ip", 0, "TLS handshakes one client address may have in progress (`N`, default 100; -1: no limit)")
	fs.StringVar(&f.handshakeTimeout, "handshake-timeout", "", "time for a client to complete the TLS handshake (`DURATION`, default 10s)")
	fs.StringVar(&f.headerTimeout, "header-timeout", "", "time for a client to send a request head (`DURATION`, default 10s)")
	fs.StringVar(&f.bodyTimeout, "body-timeout", "", "longest pause while a client sends a request body (`DURATION`, default 30s)")
	fs.StringVar(&f.idleTimeout, "idle-timeout", "", "how long an idle keep-alive connection is kept (`DURATION`, default 2m)")
	fs.StringSliceVar(&f.allow, "allow", nil, "serve only clients in these networks, every app (`CIDR`,...); others get 403")
	fs.StringSliceVar(&f.deny, "deny", nil, "refuse clients in these networks with 403, every app (`CIDR`,...)")
	fs.StringVar(&f.rateLimit, "rate-limit", "", "requests per client address over all apps, like 100/1s (`N/DURATION`); more get 429")
	fs.IntVar(&f.rateBurst, "rate-burst", 0, "requests a client may send at once within --rate-limit (`N`, default its N)")
}

// apply sets the given flags over the file's values.
func (f *frontendFlags) apply(fs *pflag.FlagSet, fe *config.Frontend) error {
	if fs.Changed("trusted-proxies") {
		fe.TrustedProxies = trimAll(f.trustedProxies)
	}
	if fs.Changed("allow") {
		fe.Allow = trimAll(f.allow)
	}
	if fs.Changed("deny") {
		fe.Deny = trimAll(f.deny)
	}
	if fs.Changed("max-conns-per-ip") {
		fe.MaxConnsPerIP = f.maxConnsPerIP
	}
	if fs.Changed("max-handshakes-per-ip") {
		fe.MaxHandshakesPerIP = f.maxHSPerIP
	}
	if fs.Changed("rate-limit") {
		fe.RateLimit = f.rateLimit
	}
	if fs.Changed("rate-burst") {
		fe.RateBurst = f.rateBurst
	}
	for _, d := range []struct {
		name, raw string
		dst       *config.Duration
	}{
		{"handshake-timeout", f.handshakeTimeout, &fe.HandshakeTimeout},
		{"header-timeout", f.headerTimeout, &fe.HeaderTimeout},
		{"body-timeout", f.bodyTimeout, &fe.BodyTimeout},
		{"idle-timeout", f.idleTimeout, &fe.IdleTimeout},
	} {
		if err := setParsed(fs, d.name, d.raw, d.dst, config.ParseDuration); err != nil {
			return err
		}
	}
	return nil
}

func trimAll(list []string) []string {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
