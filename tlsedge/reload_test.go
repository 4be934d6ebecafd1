package tlsedge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tlsedge/tlsedge/config"
)

// reloadConfig is the gateway's configuration with other apps: listen
// addresses (already bound) and state dir kept.
func reloadConfig(g *gateway, apps ...config.App) *config.Config {
	cfg := &config.Config{
		Listen: g.cfg.Listen, HTTPListen: g.cfg.HTTPListen, StateDir: g.cfg.StateDir, Admin: g.cfg.Admin,
		Apps: apps,
	}
	cfg.Normalize(cfg.StateDir)
	return cfg
}

func app(host string, backends ...string) config.App {
	a := config.App{Hosts: []string{host}}
	for _, b := range backends {
		a.Backends = append(a.Backends, config.Backend{Addr: b})
	}
	return a
}

// A reload moves new requests to the new configuration; a bad one is
// refused with its error and the running one keeps serving; a change of
// listen address is refused with a word on restarting.
func TestReload(t *testing.T) {
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	g := startGateway(t, &config.Config{Apps: []config.App{app("shop.example.com", b1.addr())}})
	c := g.client(false)
	if _, body := get(t, c, "https://shop.example.com/a", ""); body != "b1 /a" {
		t.Fatalf("before: %q", body)
	}
	if err := g.srv.Reload(reloadConfig(g, app("shop.example.com", b2.addr()), app("blog.example.com", b3.addr()))); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, body := get(t, c, "https://shop.example.com/a", ""); body != "b2 /a" {
		t.Errorf("after reload, shop: %q", body)
	}
	if _, body := get(t, g.client(true), "https://blog.example.com/x", ""); body != "b3 /x" {
		t.Errorf("after reload, the new app: %q", body)
	}
	if !strings.Contains(g.logs.String(), "configuration reloaded") {
		t.Error("no log line for the reload")
	}

	bad := reloadConfig(g, app("shop.example.com"))
	err := g.srv.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), "backend") {
		t.Fatalf("a config without backends: %v", err)
	}
	if _, body := get(t, c, "https://shop.example.com/b", ""); body != "b2 /b" {
		t.Errorf("after a refused reload: %q", body)
	}

	moved := reloadConfig(g, app("shop.example.com", b1.addr()))
	moved.Listen = "127.0.0.1:1"
	if err := g.srv.Reload(moved); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("a new listen address: %v", err)
	}
	if _, body := get(t, c, "https://shop.example.com/c", ""); body != "b2 /c" {
		t.Errorf("after a refused listener change: %q", body)
	}
}

// A backend that is down stays down across a reload that keeps it: its
// health lives in the registry, not in the snapshot.
func TestReloadKeepsHealth(t *testing.T) {
	b1 := startBackend(t, "b1")
	dead := freeAddr(t)
	a := app("shop.example.com", dead, b1.addr())
	a.PassiveFails = 1
	g := startGateway(t, &config.Config{Apps: []config.App{a}})
	c := g.client(false)
	for i := 0; i < 4; i++ {
		get(t, c, "https://shop.example.com/", "")
	}
	be := g.srv.registry.Backend(g.cfg.Apps[0].Backends[0].ID, dead)
	if be.Up(time.Now()) {
		t.Fatal("the dead backend was not ejected")
	}
	a2 := app("shop.example.com", dead, b1.addr())
	a2.PassiveFails = 1
	a2.Methods = []string{"GET", "HEAD"} // a change, same backends
	if err := g.srv.Reload(reloadConfig(g, a2)); err != nil {
		t.Fatal(err)
	}
	after := g.srv.registry.Backend(g.srv.snap.Load().cfg.Apps[0].Backends[0].ID, dead)
	if after != be || after.Up(time.Now()) {
		t.Errorf("health was not carried over (same backend %v, up %v)", after == be, after.Up(time.Now()))
	}
}

// Steady load through five reloads, one of them invalid: no request
// fails, and every answer comes from the backend of the configuration
// that was running (old or new), never an error.
func TestReloadUnderLoad(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	g := startGateway(t, &config.Config{Apps: []config.App{app("shop.example.com", b1.addr())}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := g.client(true)
			for i := 0; i < 5000; i++ { // bounded; stopped much earlier
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://shop.example.com/load")
				if err != nil {
					failed.Add(1)
					t.Errorf("request failed: %v", err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || (string(body) != "b1 /load" && string(body) != "b2 /load") {
					failed.Add(1)
					t.Errorf("answer %d %q", resp.StatusCode, body)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	configs := []*config.Config{
		reloadConfig(g, app("shop.example.com", b2.addr())),
		reloadConfig(g, app("shop.example.com", b1.addr(), b2.addr())),
		reloadConfig(g, app("shop.example.com")), // invalid: no backend
		reloadConfig(g, app("shop.example.com", b1.addr())),
		reloadConfig(g, app("shop.example.com", b2.addr())),
	}
	refused := 0
	for _, cfg := range configs {
		time.Sleep(300 * time.Millisecond)
		if err := g.srv.Reload(cfg); err != nil {
			refused++
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests answered, %d failed, %d of 5 reloads refused", ok.Load(), failed.Load(), refused)
	if failed.Load() != 0 || refused != 1 || ok.Load() == 0 {
		t.Errorf("%d failed, %d reloads refused (want 0 and 1)", failed.Load(), refused)
	}
}

// A reload closes no open connection: a TCP-mode session and a WebSocket
// through an app both go on talking after it, whether their service
// changed or not.
func TestReloadKeepsOpenConnections(t *testing.T) {
	echo := tcpEcho(t, "echo", false)
	listen := freeAddr(t)
	ws := startWSBackend(t)
	mk := func(extra string) *config.Config {
		a := app("shop.example.com", ws)
		if extra != "" {
			a.Methods = []string{"GET", "POST"} // the app changes
		}
		return &config.Config{
			Apps: []config.App{a},
			TCP:  []config.TCPService{{Listen: listen, Backends: []config.Backend{{Addr: echo}}}},
		}
	}
	g := startGateway(t, mk(""))
	c, err := tls.Dial("tcp", g.srv.TCPAddrs()[0].String(), &tls.Config{ServerName: "shop.example.com", RootCAs: g.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	wsc := dialWS(t, g, "shop.example.com")
	say := func(when string) {
		t.Helper()
		io.WriteString(c, when+"\n") //nolint:errcheck
		if line, err := br.ReadString('\n'); err != nil || line != "echo: "+when+"\n" {
			t.Errorf("TCP session %s: %q %v", when, line, err)
		}
		if err := wsc.WriteMessage(websocket.TextMessage, []byte(when)); err != nil {
			t.Errorf("WebSocket write %s: %v", when, err)
			return
		}
		if _, msg, err := wsc.ReadMessage(); err != nil || string(msg) != "echo: "+when {
			t.Errorf("WebSocket %s: %q %v", when, msg, err)
		}
	}
	say("before")
	cfg := mk("changed")
	cfg.Listen, cfg.HTTPListen, cfg.StateDir, cfg.Admin = g.cfg.Listen, g.cfg.HTTPListen, g.cfg.StateDir, g.cfg.Admin
	cfg.Normalize(cfg.StateDir)
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	say("after")
}
