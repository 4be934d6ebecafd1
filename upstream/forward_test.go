package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A client that leaves while the backend thinks gets 499 (logged at debug
// level only), and the backend connection is closed at once rather than
// after ResponseHeaderTimeout.
func TestClientGoneIs499(t *testing.T) {
	arrived := make(chan struct{})
	backendSawClose := make(chan struct{})
	be := newTestBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			close(backendSawClose)
		case <-time.After(10 * time.Second):
		}
	})
	p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	status := make(chan int, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w}
		p.Serve(rec, r, nil)
		status <- rec.status
	}))
	t.Cleanup(front.Close)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL, nil)
	go func() {
		<-arrived
		cancel()
	}()
	if _, err := front.Client().Do(req); err == nil {
		t.Fatal("the request succeeded; want it cancelled")
	}
	select {
	case got := <-status:
		if got != StatusClientClosedRequest {
			t.Errorf("status %d, want 499", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the client left")
	}
	select {
	case <-backendSawClose:
	case <-time.After(5 * time.Second):
		t.Error("the backend connection stayed open")
	}
	if e := errorEntries(hook); len(e) != 0 {
		t.Errorf("a client leaving was logged as a failure: %v", e)
	}
	eventually(t, "in-flight back to zero", func() bool { return p.pool.Backend("slow").InFlight() == 0 })
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// A backend that refuses a large upload before reading it (413) is
// answered with its refusal, not a 502: the body is not replayed, and the
// connection is not kept.
func TestEarlyResponseToUpload(t *testing.T) {
	be := newTestBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	status := make(chan int, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w}
		p.Serve(rec, r, nil)
		status <- rec.status
	}))
	t.Cleanup(front.Close)
	resp, err := front.Client().Post(front.URL, "application/octet-stream", &pattern{n: 64 << 20})
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	} // else the front cut the rest of the upload before the client read the answer
	if got := <-status; got != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", got)
	}
	if n := be.requests.Load(); n != 1 {
		t.Errorf("backend saw %d requests, want 1", n)
	}
	if e := errorEntries(hook); len(e) != 0 {
		t.Errorf("logged %v", e)
	}
	if n := p.pool.stacks[0].idleLen(); n != 0 {
		t.Errorf("%d idle connections, want 0", n)
	}
}

// A backend that stops reading a large upload without answering cannot
// hold the request beyond ResponseHeaderTimeout per write: the request
// ends with a 504 and one log line.
func TestStalledUploadTimesOut(t *testing.T) {
	release := make(chan struct{})
	rb := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		<-release // reads nothing more: the socket buffers fill up
	})
	defer close(release)
	p, hook := newTestProxy(t, PoolConfig{
		Backends:              []BackendConfig{{ID: "stall", Addr: rb.addr()}},
		ResponseHeaderTimeout: 100 * time.Millisecond,
	}, nil)
	front := newFront(t, p, nil)
	start := time.Now()
	resp, err := front.Client().Post(front.URL, "application/octet-stream", &pattern{n: 256 << 20})
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", resp.StatusCode)
		}
	} // else the front cut the upload after answering; the log says what happened
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	eventually(t, "the 504 log line", func() bool {
		e := errorEntries(hook)
		return len(e) == 1 && e[0].Data["status"] == http.StatusGatewayTimeout
	})
}
