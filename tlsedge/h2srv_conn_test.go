package tlsedge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2TestServer serves HTTP/2 over TLS on loopback the way the gateway
// does: its own accept loop, then h2Server.serveConn.
type h2TestServer struct {
	addr  string
	roots *x509.CertPool
	conns h2Conns
	calls atomic.Int64 // handler calls
	// The connections' timeouts (durations), read as each one starts:
	// the idle timeout (default a minute) and the body timeout (none).
	idleTimeout, bodyTimeout atomic.Int64
	ln                       net.Listener
	wg                       sync.WaitGroup
	cancel                   context.CancelFunc
}

// startH2TestServer starts a server for cert (trusted by roots) with h as
// handler, counted in calls.
func startH2TestServer(tb testing.TB, cert tls.Certificate, roots *x509.CertPool, h http.Handler) *h2TestServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &h2TestServer{addr: ln.Addr().String(), roots: roots, ln: ln}
	srv, err := newH2Server(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		h.ServeHTTP(w, r)
	})})
	if err != nil {
		tb.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				tc := tls.Server(nc, conf)
				if err := tc.HandshakeContext(ctx); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
					tc.Close()
					return
				}
				idle := time.Duration(s.idleTimeout.Load())
				if idle == 0 {
					idle = time.Minute
				}
				opts := h2ConnOptions{idle: idle, header: 10 * time.Second, body: time.Duration(s.bodyTimeout.Load())}
				srv.serveConn(ctx, tc, opts, &s.conns)
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

func (s *h2TestServer) close() {
	s.ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.conns.shutdown(ctx) //nolint:errcheck // a stuck conn is closed
	s.cancel()
	s.wg.Wait()
}

// client is a Go HTTP/2 client for s.
func (s *h2TestServer) client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: s.roots, ServerName: "localhost"},
			ForceAttemptHTTP2: true,
		},
		Timeout: 30 * time.Second,
	}
}

// testH2Cert is a certificate for "localhost" made by selfSigned.
func testH2Cert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, leaf := selfSigned(t, "localhost", "localhost")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return cert, roots
}

// h2TestHandler: / checks r.TLS, reads the body and says hello, /big
// sends 1 MiB, /echo answers with the length and SHA-256 of the body.
func h2TestHandler() http.Handler {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.TLS.NegotiatedProtocol != "h2" {
			http.Error(w, "no TLS state", http.StatusInternalServerError)
			return
		}
		// Read the body first, as the proxy does: the server checks it
		// against Content-Length as it arrives (h2spec 8.1.2.6).
		io.Copy(io.Discard, r.Body) //nolint:errcheck // a bad body resets the stream
		io.WriteString(w, "hello\n")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	return mux
}

// h2Raw is a frame-level HTTP/2 client.
type h2Raw struct {
	t    *testing.T
	c    *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

// dialH2Raw connects, sends the preface and settings, and reads up to the
// server's SETTINGS, which it acknowledges.
func dialH2Raw(t *testing.T, s *h2TestServer, settings ...http2.Setting) *h2Raw {
	t.Helper()
	c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.roots, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := &h2Raw{t: t, c: c, fr: http2.NewFramer(c, c)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.hbuf)
	io.WriteString(c, http2.ClientPreface)
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	for {
		f := r.read()
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			r.fr.WriteSettingsAck()
			return r
		}
	}
}

func (r *h2Raw) read() http2.Frame {
	r.t.Helper()
	f, err := r.fr.ReadFrame()
	if err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	return f
}

// request opens stream id with a request for path and extra header
// fields (name, value pairs), ending the stream unless open.
func (r *h2Raw) request(id uint32, method, path string, open bool, extra ...string) {
	r.t.Helper()
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i < len(extra); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndHeaders: true, EndStream: !open}); err != nil {
		r.t.Fatal(err)
	}
}

// h2Event is a frame the client saw, reduced to what tests compare.
type h2Event struct {
	typ       http2.FrameType
	id        uint32
	endStream bool
	status    string // HEADERS
	code      http2.ErrCode
	n         int // DATA length
}

func (e h2Event) String() string {
	return fmt.Sprintf("%v[%d end=%v status=%s code=%v len=%d]", e.typ, e.id, e.endStream, e.status, e.code, e.n)
}

// until reads frames, answering nothing, until stop(event) holds, and
// returns the events of stream id (all streams when 0), then that last one.
func (r *h2Raw) until(id uint32, stop func(h2Event) bool) []h2Event {
	r.t.Helper()
	var evs []h2Event
	for {
		e := h2Event{}
		switch f := r.read().(type) {
		case *http2.MetaHeadersFrame:
			e = h2Event{typ: http2.FrameHeaders, id: f.StreamID, endStream: f.StreamEnded(), status: f.PseudoValue("status")}
		case *http2.DataFrame:
			e = h2Event{typ: http2.FrameData, id: f.StreamID, endStream: f.StreamEnded(), n: len(f.Data())}
		case *http2.RSTStreamFrame:
			e = h2Event{typ: http2.FrameRSTStream, id: f.StreamID, code: f.ErrCode}
		case *http2.GoAwayFrame:
			e = h2Event{typ: http2.FrameGoAway, code: f.ErrCode}
		case *http2.PingFrame:
			e = h2Event{typ: http2.FramePing, endStream: f.IsAck()}
		default:
			e = h2Event{typ: f.Header().Type, id: f.Header().StreamID}
		}
		if stop(e) {
			return append(evs, e)
		}
		if id == 0 || e.id == id || e.typ == http2.FrameGoAway {
			evs = append(evs, e)
		}
	}
}

// sync sends a PING and returns the events of stream id up to its ACK:
// whatever the server sent on the stream before.
func (r *h2Raw) sync(id uint32) []h2Event {
	r.t.Helper()
	r.fr.WritePing(false, [8]byte{'g', 'u', 'a', 'r', 'd'})
	evs := r.until(id, func(e h2Event) bool { return e.typ == http2.FramePing && e.endStream })
	return evs[:len(evs)-1]
}

func h2IsReset(id uint32) func(h2Event) bool {
	return func(e h2Event) bool { return e.typ == http2.FrameRSTStream && e.id == id || e.typ == http2.FrameGoAway }
}

func TestH2SrvConnectionSpecificFields(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	cases := []struct {
		name    string
		fields  []string
		body    bool // the request has a body, not sent before the answer
		refused bool
	}{
		{"connection", []string{"connection", "keep-alive"}, false, true},
		{"keep-alive", []string{"keep-alive", "timeout=5"}, false, true},
		{"proxy-connection", []string{"proxy-connection", "close"}, false, true},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}, false, true},
		{"upgrade", []string{"upgrade", "websocket"}, false, true},
		{"te gzip", []string{"te", "gzip"}, false, true},
		{"te trailers deflate", []string{"te", "trailers, deflate"}, false, true},
		{"te twice", []string{"te", "trailers", "te", "trailers"}, false, true},
		// The server answers before the client ended the stream: one
		// reset, PROTOCOL_ERROR, not a second one (NO_ERROR).
		{"connection with body", []string{"connection", "close"}, true, true},
		{"te trailers", []string{"te", "trailers"}, false, false},
		{"plain", nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2Raw(t, s)
			before := s.calls.Load()
			c.request(1, "POST", "/", tc.body, tc.fields...)
			if !tc.refused {
				evs := c.until(1, func(e h2Event) bool { return e.endStream || h2IsReset(1)(e) })
				if evs[0].status != "200" || !evs[len(evs)-1].endStream {
					t.Fatalf("want a 200 answer, got %v", evs)
				}
				if evs := c.sync(1); len(evs) != 0 {
					t.Fatalf("after the answer: %v", evs)
				}
				if got := s.calls.Load() - before; got != 1 {
					t.Fatalf("handler calls: %d, want 1", got)
				}
				return
			}
			evs := c.until(1, h2IsReset(1))
			last := evs[len(evs)-1]
			if evs[0].status != "400" || last.typ != http2.FrameRSTStream || last.code != http2.ErrCodeProtocol ||
				!evs[len(evs)-2].endStream {
				t.Fatalf("want 400, END_STREAM, RST_STREAM(PROTOCOL_ERROR); got %v", evs)
			}
			if evs := c.sync(1); len(evs) != 0 {
				t.Fatalf("after the reset: %v", evs)
			}
			if got := s.calls.Load() - before; got != 0 {
				t.Fatalf("the handler was called %d times", got)
			}
			// The connection still serves.
			c.request(3, "GET", "/", false)
			if evs := c.until(3, func(e h2Event) bool { return e.endStream || h2IsReset(3)(e) }); evs[0].status != "200" {
				t.Fatalf("next request: %v", evs)
			}
		})
	}
}

func TestH2SrvDuplicateSettings(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	c := dialH2Raw(t, s)
	// RFC 9113 6.5.3: processed in order, so the window is 1.
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	evs := c.until(0, func(e h2Event) bool { return e.typ == http2.FrameSettings || e.typ == http2.FrameGoAway })
	if last := evs[len(evs)-1]; last.typ != http2.FrameSettings {
		t.Fatalf("want SETTINGS ACK, got %v", evs)
	}
	c.request(1, "GET", "/", false)
	evs = c.until(1, func(e h2Event) bool { return e.typ == http2.FrameData || h2IsReset(1)(e) })
	if last := evs[len(evs)-1]; last.typ != http2.FrameData || last.n != 1 {
		t.Fatalf("want 1 byte of DATA, got %v", evs)
	}
	// The connection keeps working: open the window, get the rest.
	c.fr.WriteWindowUpdate(1, 100)
	n := 1
	for _, e := range c.until(1, func(e h2Event) bool { return e.endStream || h2IsReset(1)(e) }) {
		n += e.n
	}
	if n != len("hello\n") {
		t.Fatalf("got %d bytes, want %d", n, len("hello\n"))
	}
	c.request(3, "GET", "/", false)
	if evs := c.until(3, func(e h2Event) bool { return e.typ == http2.FrameHeaders || h2IsReset(3)(e) }); evs[len(evs)-1].status != "200" {
		t.Fatalf("next request: %v", evs)
	}
}

// TestH2SrvHTTPClient runs Go's HTTP/2 client against the server: many
// concurrent streams, and 1 MiB bodies each way (flow control both ways,
// frames across the writer's buffer and the client's reads).
func TestH2SrvHTTPClient(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	c := s.client()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	reqBody := bytes.Repeat([]byte("request body 42 "), 1<<16)
	sum := sha256.Sum256(reqBody)
	wantEcho := fmt.Sprintf("%d %x", len(reqBody), sum)

	const requests, workers = 100, 8
	jobs := make(chan int)
	errs := make(chan error, requests)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				errs <- h2ClientRequest(c, s.addr, i, reqBody, big, wantEcho)
			}
		}()
	}
	for i := range requests {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := s.calls.Load(); got != requests {
		t.Errorf("handler calls: %d, want %d", got, requests)
	}
}

// h2ClientRequest makes request i: a GET of /, a GET of /big or a POST of
// body to /echo, in turn, and checks the answer.
func h2ClientRequest(c *http.Client, addr string, i int, body, big []byte, wantEcho string) error {
	var (
		req  *http.Request
		want []byte
	)
	switch i % 3 {
	case 0:
		req, _ = http.NewRequest("GET", "https://"+addr+"/", nil)
		want = []byte("hello\n")
	case 1:
		req, _ = http.NewRequest("GET", "https://"+addr+"/big", nil)
		want = big
	default:
		req, _ = http.NewRequest("POST", "https://"+addr+"/echo", bytes.NewReader(body))
		want = []byte(wantEcho)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("request %d: %w", i, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("request %d: body: %w", i, err)
	}
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		return fmt.Errorf("request %d %s: %s %d, %d bytes (want %d)", i, req.URL.Path, resp.Proto, resp.StatusCode, len(got), len(want))
	}
	return nil
}

// TestH2SrvShutdown: h2Conns.shutdown sends GOAWAY(NO_ERROR), the stream
// in flight finishes, the connection closes, and shutdown returns.
func TestH2SrvShutdown(t *testing.T) {
	cert, roots := testH2Cert(t)
	started, release := make(chan struct{}), make(chan struct{})
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	}))
	c := dialH2Raw(t, s)
	c.request(1, "GET", "/slow", false)
	<-started
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc <- s.conns.shutdown(ctx)
	}()
	evs := c.until(0, func(e h2Event) bool { return e.typ == http2.FrameGoAway })
	if last := evs[len(evs)-1]; last.code != http2.ErrCodeNo {
		t.Fatalf("want GOAWAY(NO_ERROR), got %v", evs)
	}
	select {
	case err := <-errc:
		t.Fatalf("shutdown returned with a stream in flight: %v", err)
	default:
	}
	close(release)
	evs = c.until(1, func(e h2Event) bool { return e.endStream || h2IsReset(1)(e) })
	if evs[0].status != "200" || !evs[len(evs)-1].endStream {
		t.Fatalf("the stream in flight: %v", evs)
	}
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for {
		if _, err := c.fr.ReadFrame(); err != nil {
			break // the server closed the connection
		}
	}
	if s.conns.add(new(h2SrvConn)) {
		t.Fatal("a connection was accepted after shutdown")
	}
}

// TestH2SrvResetFlushedAfterHandlerDrains: a stream error the reader finds
// reaches the client even when the stream's handler takes the writer
// between the reader queueing the RST_STREAM and the reader's next wait
// for the client. lockWriter moves the queued frames into the write
// buffer, the handler sees its stream reset and returns without writing,
// and nothing flushed the buffer: h2spec 8.1 "Sends a second HEADERS frame
// without the END_STREAM flag" (and 6.9.1 on WINDOW_UPDATE) timed out in
// TestH2SpecGateway about one run in ten, when the reader was descheduled
// in that window. Here a frame sent in two parts holds the reader there,
// and the handler waits until the RST_STREAM is queued.
func TestH2SrvResetFlushedAfterHandlerDrains(t *testing.T) {
	cert, roots := testH2Cert(t)
	started, proceed := make(chan struct{}), make(chan struct{})
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		<-proceed
		// No answer, as the proxy gives none to a client that went away.
	}))
	c := dialH2Raw(t, s)
	// What h2spec sends: a POST, a DATA frame, then a second HEADERS
	// frame without END_STREAM (RFC 9113 8.1: malformed, a stream error).
	c.request(1, "POST", "/", true)
	c.fr.WriteData(1, false, []byte("test"))
	<-started
	c.sync(1) // what the server queued so far went out
	var sc *h2SrvConn
	s.conns.mu.Lock()
	for k := range s.conns.conns {
		sc = k
	}
	s.conns.mu.Unlock()

	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	c.hbuf.Reset()
	c.enc.WriteField(hpack.HeaderField{Name: "x-test", Value: "ok"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	fr.WriteWindowUpdate(0, 1) // any frame that makes the server queue nothing
	raw := b.Bytes()
	// One write (one TLS record): the HEADERS and all but the last two
	// bytes of the WINDOW_UPDATE. The reader resets stream 1 and waits
	// for the rest of the WINDOW_UPDATE.
	if _, err := c.c.Write(raw[:len(raw)-2]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the RST_STREAM queued", sc.ctlPending.Load)
	close(proceed)
	eventually(t, "the handler took the writer", func() bool { return !sc.ctlPending.Load() })
	if _, err := c.c.Write(raw[len(raw)-2:]); err != nil {
		t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	evs := c.until(1, h2IsReset(1))
	if last := evs[len(evs)-1]; last.typ != http2.FrameRSTStream || last.code != http2.ErrCodeProtocol {
		t.Fatalf("want RST_STREAM(PROTOCOL_ERROR), got %v", evs)
	}
}

// TestH2SrvSettingsAckBeforeItsWindow: the acknowledgement of a SETTINGS
// frame goes out before any frame that uses the window it opened (RFC 9113
// 6.5.3: the ACK is emitted once the values are processed). h2spec 6.9.2
// "Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame" drops
// every frame before the ACK and then waits for DATA: it timed out in
// TestH2SpecGateway when the handler, woken by the new window, sent and
// flushed its DATA before the reader had queued the ACK. Here the reader
// is held before it queues the ACK.
func TestH2SrvSettingsAckBeforeItsWindow(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	c := dialH2Raw(t, s, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	c.sync(0) // our SETTINGS acknowledged
	var sc *h2SrvConn
	s.conns.mu.Lock()
	for k := range s.conns.conns {
		sc = k
	}
	s.conns.mu.Unlock()
	c.request(1, "GET", "/", false) // its answer waits for a window
	eventually(t, "the handler called", func() bool { return s.calls.Load() == 1 })

	frames := make(chan string, 16)
	go func() {
		defer close(frames)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			h := f.Header()
			switch {
			case h.Type == http2.FrameSettings && h.Flags.Has(http2.FlagSettingsAck):
				frames <- "SETTINGS ACK"
			case h.Type == http2.FrameData:
				frames <- fmt.Sprintf("DATA[%d len=%d]", h.StreamID, h.Length)
			default:
				frames <- fmt.Sprintf("%v[%d]", h.Type, h.StreamID)
			}
		}
	}()
	var got []string
	sc.qmu.Lock() // the reader cannot queue the ACK
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}); err != nil {
		sc.qmu.Unlock()
		t.Fatal(err)
	}
	hold := time.After(time.Second)
	for held := true; held; {
		select {
		case f := <-frames:
			got = append(got, f)
		case <-hold:
			held = false
		}
	}
	sc.qmu.Unlock()
	timeout := time.After(5 * time.Second)
	for len(got) == 0 || got[len(got)-1] != "DATA[1 len=1]" {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("connection ended: %v", got)
			}
			got = append(got, f)
		case <-timeout:
			t.Fatalf("no DATA: %v", got)
		}
	}
	if got[0] != "SETTINGS ACK" {
		t.Fatalf("want the SETTINGS ACK first, got %v", got)
	}
}
