package admin

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser. A missing browser fails the test rather
// than skipping it: the status page is only tested here.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found (/usr/bin/chromium or chromium on PATH): `make test` installs it, or run `apt-get install -y chromium`")
	return ""
}

// artifactDir is where screenshots go: $TLSEDGE_ARTIFACTS if set (CI keeps
// it), else a temporary directory of the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TLSEDGE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact dir: %v", err)
	}
	return dir
}

// lockedBuffer collects the browser's output, written from chromedp's
// goroutine and read when the test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startBrowser starts headless Chromium and returns a context for one tab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	var out lockedBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&out),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("browser output:\n%s", out.String())
		}
	})
	// The first Run starts the browser and binds it to ctx, so it gets no
	// timeout of its own; the steps below do.
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath(t), err)
	}
	t.Logf("browser started in %v", time.Since(start).Round(time.Millisecond))
	return ctx
}

// eventually runs fn until it succeeds or d has passed, each try bounded by
// a second. The page reloads itself, so a read can land mid-navigation.
func eventually[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error), ok func(T) bool) (T, error) {
	deadline := time.Now().Add(d)
	for {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := fn(tctx)
		cancel()
		if err == nil && ok(v) {
			return v, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = context.DeadlineExceeded
			}
			return v, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStatusPageInChromium(t *testing.T) {
	const refresh = time.Second
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Token: testToken, Refresh: refresh})
	ctx := startBrowser(t)
	dir := artifactDir(t)

	health := chromedp.CSS(`section[data-app="web"] tr[data-backend="web-1"] td.health`)
	text := func(ctx context.Context) (string, error) {
		s, err := chromedp.Run(ctx, chromedp.Text(health))
		return strings.TrimSpace(s), err
	}
	is := func(want string) func(string) bool { return func(s string) bool { return s == want } }

	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx,
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`table.backends`)),
	); err != nil {
		t.Fatalf("loading the status page: %v", err)
	}
	if got, err := eventually(ctx, 2*refresh, text, is("up")); err != nil {
		t.Fatalf("web-1 health %q, want up: %v", got, err)
	}
	// The stylesheet applied, so the CSP hash matches the inline <style>.
	radius, err := eventually(ctx, 2*refresh, func(ctx context.Context) (string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("span.pill.up")).borderTopLeftRadius`))
	}, func(s string) bool { return s != "" && s != "0px" })
	if err != nil {
		t.Errorf("the inline stylesheet did not apply (pill border radius %q): %v", radius, err)
	}

	if err := src.setUp("web", "web-1", false); err != nil {
		t.Fatal(err)
	}
	flipped := time.Now()
	if got, err := eventually(ctx, 2*refresh, text, is("down")); err != nil {
		t.Fatalf("web-1 health %q %v after it went down, want down within %v: %v", got, time.Since(flipped), 2*refresh, err)
	}
	t.Logf("the page showed web-1 down %v after it went down (refresh %v)", time.Since(flipped).Round(time.Millisecond), refresh)

	shot := func(name string) {
		t.Helper()
		png, err := eventually(ctx, 2*refresh, func(ctx context.Context) ([]byte, error) {
			return chromedp.Run(ctx, chromedp.FullScreenshot(100))
		}, func(b []byte) bool { return len(b) > 0 })
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	shot("admin-status.png")

	// A phone: mobile emulation honours the viewport meta tag, so without
	// it the page would lay out at 980px and overflow.
	if err := chromedp.Do(tctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(3)),
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`table.backends`)),
	); err != nil {
		t.Fatalf("loading the status page on a phone viewport: %v", err)
	}
	width, err := eventually(ctx, 2*refresh, func(ctx context.Context) (int, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	}, func(w int) bool { return w > 0 && w <= 390 })
	if err != nil {
		t.Errorf("phone viewport: page is %dpx wide, want at most 390 (no horizontal scrolling): %v", width, err)
	}
	if got, err := eventually(ctx, 2*refresh, text, is("down")); err != nil {
		t.Errorf("phone viewport: web-1 health %q, want down: %v", got, err)
	}
	shot("admin-status-phone.png")
}
