// Package chromiumtest runs the status page's browser tests: it finds and
// starts headless Chromium (through chromedp), polls a page that reloads
// itself, and saves screenshots where CI keeps them.
//
// A missing browser fails the test rather than skipping it: the status
// page is only tested in a browser here. `make test` installs Chromium
// (the Debian package chromium).
package chromiumtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path finds the browser: /usr/bin/chromium, else the first of the usual
// names on PATH. It fails the test when there is none.
func Path(t testing.TB) string {
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

// ArtifactDir is where screenshots go: $TLSEDGE_ARTIFACTS if set (CI keeps
// it), else a temporary directory of the test. Call it once per test: each
// call without the variable is a new directory.
func ArtifactDir(t testing.TB) string {
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

// Start starts headless Chromium with a 1280×900 window and returns a
// context for one tab. The browser is stopped when the test ends; if the
// test failed, its output is logged.
func Start(t testing.TB) context.Context {
	t.Helper()
	path := Path(t)
	var out lockedBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
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
	// timeout of its own; the caller's steps do.
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Logf("browser started in %v", time.Since(start).Round(time.Millisecond))
	return ctx
}

// Eventually runs fn until ok accepts its result or d has passed, each try
// bounded by a second, and returns the last result. The status page
// reloads itself, so a read can land mid-navigation and fail; only the
// last error counts.
func Eventually[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error), ok func(T) bool) (T, error) {
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

// Screenshot saves a full-page PNG of the tab as dir/name, trying for up to
// within (a reload may be under way), and returns its path. Failing to take
// or write it fails the test.
func Screenshot(t testing.TB, ctx context.Context, dir, name string, within time.Duration) string {
	t.Helper()
	png, err := Eventually(ctx, within, func(ctx context.Context) ([]byte, error) {
		return chromedp.Run(ctx, chromedp.FullScreenshot(100))
	}, func(b []byte) bool { return len(b) > 0 })
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}
