package admin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tlsedge/tlsedge/internal/chromiumtest"
)

// The status page in headless Chromium against a fake Source: a backend
// that goes down shows as down within two refreshes, the inline stylesheet
// passes the CSP, and a phone viewport needs no horizontal scrolling.
func TestStatusPageInChromium(t *testing.T) {
	const refresh = time.Second
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Token: testToken, Refresh: refresh})
	ctx := chromiumtest.Start(t)
	dir := chromiumtest.ArtifactDir(t)

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
	if got, err := chromiumtest.Eventually(ctx, 2*refresh, text, is("up")); err != nil {
		t.Fatalf("web-1 health %q, want up: %v", got, err)
	}
	// The stylesheet applied, so the CSP hash matches the inline <style>.
	radius, err := chromiumtest.Eventually(ctx, 2*refresh, func(ctx context.Context) (string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("span.pill.up")).borderTopLeftRadius`))
	}, func(s string) bool { return s != "" && s != "0px" })
	if err != nil {
		t.Errorf("the inline stylesheet did not apply (pill border radius %q): %v", radius, err)
	}

	if err := src.setUp("web", "web-1", false); err != nil {
		t.Fatal(err)
	}
	flipped := time.Now()
	if got, err := chromiumtest.Eventually(ctx, 2*refresh, text, is("down")); err != nil {
		t.Fatalf("web-1 health %q %v after it went down, want down within %v: %v", got, time.Since(flipped), 2*refresh, err)
	}
	t.Logf("the page showed web-1 down %v after it went down (refresh %v)", time.Since(flipped).Round(time.Millisecond), refresh)

	chromiumtest.Screenshot(t, ctx, dir, "admin-status.png", 2*refresh)

	// A phone: mobile emulation honours the viewport meta tag, so without
	// it the page would lay out at 980px and overflow.
	if err := chromedp.Do(tctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(3)),
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`table.backends`)),
	); err != nil {
		t.Fatalf("loading the status page on a phone viewport: %v", err)
	}
	width, err := chromiumtest.Eventually(ctx, 2*refresh, func(ctx context.Context) (int, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	}, func(w int) bool { return w > 0 && w <= 390 })
	if err != nil {
		t.Errorf("phone viewport: page is %dpx wide, want at most 390 (no horizontal scrolling): %v", width, err)
	}
	if got, err := chromiumtest.Eventually(ctx, 2*refresh, text, is("down")); err != nil {
		t.Errorf("phone viewport: web-1 health %q, want down: %v", got, err)
	}
	chromiumtest.Screenshot(t, ctx, dir, "admin-status-phone.png", 2*refresh)
}
