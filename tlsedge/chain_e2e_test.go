package tlsedge

import (
	"bufio"
	"compress/gzip"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tlsedge/tlsedge/config"
)

// The filter chain end to end, through the real gateway, over HTTP/1.1
// and HTTP/2 where the protocol matters. Apps answer raw.example.com.

var rawHost = []string{"raw.example.com"}

func backends(addrs ...string) []config.Backend {
	var bs []config.Backend
	for _, a := range addrs {
		bs = append(bs, config.Backend{Addr: a})
	}
	return bs
}

// serveFunc is a real backend running h.
func serveFunc(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// (a) Routing and the backend see the normalised path: every spelling of
// /admin reaches the admin app (which refuses everyone), none the open
// app; an encoded slash is refused unless the app allows it.
func TestPathNormRouting(t *testing.T) {
	admin, open := startBackend(t, "admin"), startBackend(t, "open")
	g := startGateway(t, &config.Config{Apps: []config.App{
		{Hosts: rawHost, Path: "/admin", Backends: backends(admin.addr()), Deny: []string{"0.0.0.0/0", "::/0"}},
		{Hosts: rawHost, Backends: backends(open.addr())},
	}})
	spellings := []string{"/admin", "/%61dmin", "/x/../admin", "//admin", "/admin/./", "/%61dmin/./x/.."}
	for _, p := range protos {
		for _, target := range spellings {
			if status, saw := protoOutcome(t, g, p.h2, target); status != 403 {
				t.Errorf("%s GET %s: %s, want 403 from the admin app", p.name, target, saw)
			}
		}
		if status, saw := protoOutcome(t, g, p.h2, "/a%2Fb"); status != 400 {
			t.Errorf("%s GET /a%%2Fb: %s, want 400", p.name, saw)
		}
	}
	if admin.count()+open.count() != 0 {
		t.Errorf("backend hits: admin %d, open %d; want none", admin.count(), open.count())
	}

	// Open admin app: the backend gets one spelling; with
	// allow_encoded_slash the %2F passes as the client wrote it.
	g2 := startGateway(t, &config.Config{Apps: []config.App{
		{Hosts: rawHost, Path: "/admin", Backends: backends(admin.addr())},
		{Hosts: rawHost, Backends: backends(open.addr()), Filters: config.Filters{PathNormalize: config.PathNormAllowEncodedSlash}},
	}})
	for _, p := range protos {
		for i, target := range spellings {
			want := []string{"/admin", "/admin", "/admin", "/admin", "/admin/", "/admin/"}[i]
			status, saw := protoOutcome(t, g2, p.h2, target)
			if got := lastURI(admin); status != 200 || got != want {
				t.Errorf("%s GET %s: %s, backend saw %q; want 200, %q", p.name, target, saw, got, want)
			}
		}
		if status, saw := protoOutcome(t, g2, p.h2, "/a%2Fb"); status != 200 || lastURI(open) != "/a%2Fb" {
			t.Errorf("%s GET /a%%2Fb with allow_encoded_slash: %s, backend saw %q", p.name, saw, lastURI(open))
		}
	}
}

// lastURI is the request target of the last request b received.
func lastURI(b *backend) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		return ""
	}
	return b.last.RequestURI
}

// (b) Header rules: the backend sees the request rules applied (with the
// connection's values), the client the response rules.
func TestHeaderRulesEndToEnd(t *testing.T) {
	seen := make(chan http.Header, 1)
	addr := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("X-Backend-Secret", "s3cret")
		w.Header().Set("X-Kept", "k")
		io.WriteString(w, "ok") //nolint:errcheck
	})
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: rawHost, Backends: backends(addr), Filters: config.Filters{
		RequestHeaders:  []string{"set:X-Client={client_ip} {tls_version} {sni}", "del:X-Remove", "rename:X-Old=X-New"},
		ResponseHeaders: []string{"set:X-Served-By=edge", "del:X-Backend-Secret"},
	}}}})
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "https://raw.example.com/h", nil)
			req.Header.Set("X-Client", "spoofed")
			req.Header.Set("X-Remove", "1")
			req.Header.Set("X-Old", "o1")
			resp, err := protoClient(t, g, p.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := <-seen
			if v := h.Get("X-Client"); v != "127.0.0.1 TLSv1.3 raw.example.com" {
				t.Errorf("backend X-Client %q", v)
			}
			if h["X-Remove"] != nil || h["X-Old"] != nil || h.Get("X-New") != "o1" {
				t.Errorf("backend X-Remove %q, X-Old %q, X-New %q", h["X-Remove"], h["X-Old"], h["X-New"])
			}
			if resp.ProtoMajor != map[bool]int{false: 1, true: 2}[p.h2] || resp.Header.Get("X-Served-By") != "edge" ||
				resp.Header["X-Backend-Secret"] != nil || resp.Header.Get("X-Kept") != "k" {
				t.Errorf("%s response headers %v", resp.Proto, resp.Header)
			}
		})
	}
}

// (c) Error pages: tlsedge's own errors (backend down, allow/deny,
// methods) get the page with the status and request id filled in; a
// backend's own 502 keeps its body unless replace_backend_errors.
func TestErrorPagesEndToEnd(t *testing.T) {
	page := filepath.Join(t.TempDir(), "err.html")
	writeFile(t, page, []byte("{status} custom {request_id}"))
	pages := map[int]string{502: page, 503: page, 403: page, 405: page}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close() // nothing listens there now
	var hits atomic.Int32
	bad := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"title":"backend's own"}`) //nolint:errcheck
	})
	app := func(path string, addr string, f config.Filters) config.App {
		f.ErrorPages = pages
		return config.App{Hosts: rawHost, Path: path, Backends: backends(addr), Filters: f}
	}
	denied, getOnly := app("/denied", bad, config.Filters{}), app("/get-only", bad, config.Filters{})
	denied.Deny, getOnly.Methods = []string{"0.0.0.0/0", "::/0"}, []string{"GET"}
	g := startGateway(t, &config.Config{Apps: []config.App{
		app("/down", down, config.Filters{}),
		app("/own", bad, config.Filters{}),
		app("/replaced", bad, config.Filters{ReplaceBackendErrors: true}),
		denied, getOnly,
	}})
	tests := []struct {
		method, path string
		status       int
		page         bool // else the backend's own body
		hits         int32
	}{
		// 502 while the gateway still dials; 503 once it has marked the
		// backend down.
		{"GET", "/down", 502, true, 0},
		{"GET", "/own", 502, false, 1},
		{"GET", "/replaced", 502, true, 1},
		{"GET", "/denied", 403, true, 0},
		{"POST", "/get-only", 405, true, 0},
	}
	for _, p := range protos {
		for _, tt := range tests {
			hits.Store(0)
			req, _ := http.NewRequest(tt.method, "https://raw.example.com"+tt.path, nil)
			resp, err := protoClient(t, g, p.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body, id := string(b), resp.Header.Get("X-Request-Id")
			if rest, ok := strings.CutPrefix(body, "403 custom "); ok && id == "" {
				id = rest // the 403 comes before the filter echoing the id; the page names it
			}
			status := tt.status
			if tt.path == "/down" && resp.StatusCode == 503 {
				status = 503
			}
			want := fmt.Sprintf("%d custom %s", status, id)
			if !tt.page {
				want = `{"title":"backend's own"}`
			}
			t.Logf("%s %s %s: %d %q", p.name, tt.method, tt.path, resp.StatusCode, body)
			if resp.StatusCode != status || body != want || tt.page && id == "" || hits.Load() != tt.hits {
				t.Errorf("%s %s %s: %d %q (X-Request-Id %q, backend hits %d); want %d %q",
					p.name, tt.method, tt.path, resp.StatusCode, body, id, hits.Load(), status, want)
			}
		}
	}
}

// (d) Substitution on text responses, streamed: a 20 MiB chunked body
// flushed in odd pieces comes out as strings.ReplaceAll and the regexp
// would make it of the whole body; a non-text body is untouched.
func TestSubstEndToEnd(t *testing.T) {
	var big strings.Builder
	for i := 0; big.Len() < 20<<20; i++ {
		fmt.Fprintf(&big, "<a href=\"http://internal.local/p/%d\">item-%d</a> ", i, i%1000000)
	}
	bigBody := big.String()
	small := `<p>see http://internal.local/x and item-42</p>`
	addr := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/big":
			h.Set("Content-Type", "text/html; charset=utf-8")
			for s := bigBody; len(s) > 0; {
				n := min(len(s), 7919)   // prime: matches straddle the writes
				io.WriteString(w, s[:n]) //nolint:errcheck
				w.(http.Flusher).Flush()
				s = s[n:]
			}
		case "/page", "/bin":
			h.Set("Content-Type", "text/html")
			if r.URL.Path == "/bin" {
				h.Set("Content-Type", "application/octet-stream")
			}
			h.Set("Content-Length", fmt.Sprint(len(small)))
			h.Set("ETag", `"v1"`)
			io.WriteString(w, small) //nolint:errcheck
		}
	})
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: rawHost, Backends: backends(addr), Filters: config.Filters{
		Subst: []string{"http://internal.local=>https://shop.example.com", `~item-([0-9]{1,6})=>item#$1`},
	}}}})
	re := regexp.MustCompile(`item-([0-9]{1,6})`)
	subst := func(s string) string {
		return re.ReplaceAllString(strings.ReplaceAll(s, "http://internal.local", "https://shop.example.com"), "item#$1")
	}
	for _, p := range protos {
		c := protoClient(t, g, p.h2)
		_, body := get(t, c, "https://raw.example.com/big", "")
		if want := subst(bigBody); body != want {
			t.Errorf("%s 20 MiB streamed: %d bytes, want %d, not what ReplaceAll makes", p.name, len(body), len(want))
		}
		t.Logf("%s: %d bytes in, %d out", p.name, len(bigBody), len(body))
		resp, body := get(t, c, "https://raw.example.com/page", "")
		// Go's HTTP/2 server sets the length of a body written whole;
		// never the backend's.
		if body != subst(small) || resp.ContentLength != -1 && resp.ContentLength != int64(len(body)) || resp.Header.Get("Etag") != `W/"v1"` {
			t.Errorf("%s text/html: %q, Content-Length %d, ETag %q", p.name, body, resp.ContentLength, resp.Header.Get("Etag"))
		}
		resp, body = get(t, c, "https://raw.example.com/bin", "")
		if body != small || resp.ContentLength != int64(len(small)) || resp.Header.Get("Etag") != `"v1"` {
			t.Errorf("%s octet-stream: %q, Content-Length %d, ETag %q", p.name, body, resp.ContentLength, resp.Header.Get("Etag"))
		}
	}
}

// (e) Compression by Accept-Encoding, of the substituted text (compress
// sits outside subst); bodies under compress_min go plain.
func TestCompressEndToEnd(t *testing.T) {
	text := strings.Repeat("<p>http://internal.local compressible text</p>\n", 200)
	addr := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/small" {
			io.WriteString(w, text[:100]) //nolint:errcheck
			return
		}
		io.WriteString(w, text) //nolint:errcheck
	})
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: rawHost, Backends: backends(addr), Filters: config.Filters{
		Compress: []string{"zstd", "gzip"}, Subst: []string{"http://internal.local=>https://shop.example.com"},
	}}}})
	want := strings.ReplaceAll(text, "http://internal.local", "https://shop.example.com")
	decode := map[string]func(io.Reader) (io.Reader, error){
		"":     func(r io.Reader) (io.Reader, error) { return r, nil },
		"gzip": func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
		"zstd": func(r io.Reader) (io.Reader, error) {
			d, err := zstd.NewReader(r)
			if err != nil {
				return nil, err
			}
			t.Cleanup(d.Close)
			return d, nil
		},
	}
	tests := []struct{ path, accept, coding, body string }{
		{"/", "zstd", "zstd", want},
		{"/", "gzip", "gzip", want},
		{"/", "gzip;q=0.5, zstd", "zstd", want},
		{"/", "", "", want},
		{"/", "br", "", want},
		{"/small", "zstd, gzip", "", strings.ReplaceAll(text[:100], "http://internal.local", "https://shop.example.com")},
	}
	for _, p := range protos {
		for _, tt := range tests {
			req, _ := http.NewRequest("GET", "https://raw.example.com"+tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept-Encoding", tt.accept)
			}
			resp, err := protoClient(t, g, p.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			wire, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ce := resp.Header.Get("Content-Encoding")
			var body []byte
			if dec, ok := decode[ce]; ok {
				dr, derr := dec(strings.NewReader(string(wire)))
				if derr == nil {
					body, derr = io.ReadAll(dr)
				}
				if derr != nil {
					t.Errorf("%s %s: decoding %s: %v", p.name, tt.accept, ce, derr)
				}
			}
			if ce != tt.coding || string(body) != tt.body || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("%s %s Accept-Encoding %q: Content-Encoding %q, Vary %q, %d bytes on the wire, decoded ok=%v",
					p.name, tt.path, tt.accept, ce, resp.Header.Get("Vary"), len(wire), string(body) == tt.body)
			}
			t.Logf("%s %s %q: %s %d bytes for %d", p.name, tt.path, tt.accept, ce, len(wire), len(tt.body))
		}
	}
}

// (f) Request buffering: the backend starts only once the whole body is
// at the gateway; the control case (no buffering) proves the test sees a
// backend that starts early. Over the limit: 413, nothing forwarded.
func TestBufferRequestsEndToEnd(t *testing.T) {
	const size = 256 << 10
	payload := strings.Repeat("0123456789abcdef", size/16)
	for _, buffered := range []bool{true, false} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) {
			lastPiece := make(chan struct{}) // closed just before the client writes the last piece
			started := make(chan struct{}, 1)
			type upload struct {
				early    bool // started before the last piece was being written
				body, cl string
			}
			got := make(chan upload, 1)
			var hits atomic.Int32
			addr := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				var u upload
				select {
				case <-lastPiece:
				default:
					u.early = true
				}
				select { // never blocks: a wrongly forwarded 2 MiB body shows in hits
				case started <- struct{}{}:
				default:
				}
				b, _ := io.ReadAll(r.Body)
				u.body, u.cl = string(b), r.Header.Get("Content-Length")
				select {
				case got <- u:
				default:
				}
			})
			f := config.Filters{}
			if buffered {
				f.BufferRequests = "1M"
			}
			g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: rawHost, Backends: backends(addr), Filters: f}}})
			c, br := rawConn(t, g)
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: raw.example.com\r\nContent-Length: %d\r\n\r\n", size) //nolint:errcheck
			const pieces = 4
			for i := 0; i < pieces; i++ {
				piece := payload[i*size/pieces : (i+1)*size/pieces]
				if i == pieces-1 {
					if !buffered {
						select { // streaming: the backend is already reading
						case <-started:
						case <-time.After(10 * time.Second):
							t.Fatal("control: the backend did not start before the body ended")
						}
					}
					close(lastPiece)
				} else {
					time.Sleep(50 * time.Millisecond) // a slow client (pacing only)
				}
				if _, err := io.WriteString(c, piece); err != nil {
					t.Fatal(err)
				}
			}
			resp, _ := readResp(t, br, "POST")
			u := <-got
			if resp.StatusCode != 200 || u.body != payload || u.cl != fmt.Sprint(size) || u.early != !buffered {
				t.Errorf("status %d, backend got %d bytes (intact %v, Content-Length %q), started before the last piece: %v",
					resp.StatusCode, len(u.body), u.body == payload, u.cl, u.early)
			}
			if !buffered {
				return
			}
			hits.Store(0)
			big := strings.Repeat("x", 2<<20)
			for _, req := range []string{
				fmt.Sprintf("POST /up HTTP/1.1\r\nHost: raw.example.com\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
				"POST /up HTTP/1.1\r\nHost: raw.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
					strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 64<<10, big[:64<<10]), 32) + "0\r\n\r\n",
			} {
				status, saw := h1Outcome(t, g, req)
				if status != http.StatusRequestEntityTooLarge || hits.Load() != 0 {
					t.Errorf("2 MiB body over buffer_requests=1M (%.40q): %s, backend hits %d", req, saw, hits.Load())
				}
			}
		})
	}
}

// (g) Response buffering frees the backend before a slow client has read
// a 1 MiB response; the control case (no buffering) shows the same backend
// held until the client reads. Loopback's 64 KiB MSS lets Linux grow send
// buffers past 1 MiB, which would hold the whole response with no filter
// at all, so the backend's and the gateway's sockets get the send buffers
// of a real network (set on the listeners, inherited by their sockets).
func TestBufferResponsesEndToEnd(t *testing.T) {
	body := strings.Repeat("r", 1<<20)
	for _, tc := range []struct {
		buffered, chunked bool
	}{{true, false}, {true, true}, {false, false}} {
		buffered := tc.buffered
		t.Run(fmt.Sprintf("buffered=%v,chunked=%v", tc.buffered, tc.chunked), func(t *testing.T) {
			returned := make(chan struct{})
			be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(returned)
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
					io.WriteString(w, body) //nolint:errcheck
					return
				}
				// Chunked, in pieces the proxy flushes one by one.
				for i := 0; i < len(body); i += 64 << 10 {
					io.WriteString(w, body[i:i+64<<10])   //nolint:errcheck
					http.NewResponseController(w).Flush() //nolint:errcheck
				}
			}))
			sockOpt(t, be.Listener.(*net.TCPListener), syscall.SO_SNDBUF, 32<<10)
			be.Start()
			t.Cleanup(be.Close)
			f := config.Filters{}
			if buffered {
				f.BufferResponses = "2M"
			}
			g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: rawHost, Backends: backends(be.Listener.Addr().String()), Filters: f}}})
			sockOpt(t, g.srv.tlsLn.(*net.TCPListener), syscall.SO_SNDBUF, 32<<10)
			tc, err := net.DialTimeout("tcp", g.srv.TLSAddr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tc.(*net.TCPConn).SetReadBuffer(32 << 10) //nolint:errcheck // a slow client's small window
			c := tls.Client(tc, &tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(20 * time.Second))                       //nolint:errcheck
			io.WriteString(c, "GET /r HTTP/1.1\r\nHost: raw.example.com\r\n\r\n") //nolint:errcheck
			wait := 10 * time.Second
			if !buffered {
				wait = 2 * time.Second // bounded: the backend must still be writing then
			}
			var freed bool
			select {
			case <-returned:
				freed = true
			case <-time.After(wait):
			}
			if freed != buffered {
				t.Errorf("backend returned before the client read anything: %v, want %v", freed, buffered)
			}
			start := time.Now()
			resp, got := readResp(t, bufio.NewReader(c), "GET")
			if resp.StatusCode != 200 || got != body || resp.ContentLength != int64(len(body)) {
				t.Errorf("client got %d, %d bytes (intact %v), Content-Length %d", resp.StatusCode, len(got), got == body, resp.ContentLength)
			}
			<-returned
			t.Logf("backend freed before the client read: %v; client read 1 MiB in %v", freed, time.Since(start))
		})
	}
}

// sockOpt sets a SOL_SOCKET option on a socket.
func sockOpt(t *testing.T, sc syscall.Conn, opt, n int) {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, n) }); err != nil || serr != nil {
		t.Fatalf("setsockopt: %v %v", err, serr)
	}
}
