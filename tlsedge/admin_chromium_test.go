package tlsedge

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/internal/chromiumtest"
)

// pageApp is what the status page shows of one app, read in the browser.
type pageApp struct {
	Count  string            `json:"count"`  // "2/2 up"
	Health map[string]string `json:"health"` // backend id → the health cell ("up", "down")
	Row    map[string]string `json:"row"`    // backend id → the row's class (row-up, row-down…)
}

// readApp reads app's section of the page in the tab. Mid-reload there is
// no section yet; the zero pageApp says so.
func readApp(app string) func(context.Context) (pageApp, error) {
	name, _ := json.Marshal(app)
	js := fmt.Sprintf(`(() => {
		const app = document.querySelector('section[data-app=' + JSON.stringify(%s) + ']');
		if (!app) return {};
		const out = {count: app.querySelector('h3 .count').textContent.trim(), health: {}, row: {}};
		for (const tr of app.querySelectorAll('tr[data-backend]')) {
			out.health[tr.dataset.backend] = tr.querySelector('td.health').textContent.trim();
			out.row[tr.dataset.backend] = tr.className;
		}
		return out;
	})()`, name)
	return func(ctx context.Context) (pageApp, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[pageApp](js))
	}
}

// The status page of a real gateway in headless Chromium: an app with two
// backends under active health checks shows both up; when one backend
// stops, the page, reloading itself, shows it down within one refresh
// period plus the time the health check takes to notice, with no
// navigation by the test.
func TestAdminStatusPageInChromium(t *testing.T) {
	hc := &config.Health{Path: "/health", Interval: config.Duration(200 * time.Millisecond),
		Timeout: config.Duration(100 * time.Millisecond), Rise: 1, Fall: 1}
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	a := app("shop.example.com", b1.addr(), b2.addr())
	a.Health = hc
	g := startGateway(t, &config.Config{Admin: "127.0.0.1:0", Apps: []config.App{a}})
	appName, id1, id2 := g.cfg.Apps[0].Name, g.cfg.Apps[0].Backends[0].ID, g.cfg.Apps[0].Backends[1].ID
	url := "http://" + g.srv.AdminAddr().String() + "/"

	ctx := chromiumtest.Start(t)
	dir := chromiumtest.ArtifactDir(t)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`table.backends`)),
	); err != nil {
		t.Fatalf("loading the status page %s: %v", url, err)
	}
	// The period is the page's own (admin.Config.Refresh, whole seconds).
	content, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('meta[http-equiv="refresh"]').content`))
	secs, perr := strconv.Atoi(content)
	if err != nil || perr != nil || secs <= 0 {
		t.Fatalf("the page's refresh period %q: %v %v", content, err, perr)
	}
	refresh := time.Duration(secs) * time.Second
	read := readApp(appName)

	both, err := chromiumtest.Eventually(ctx, 2*refresh, read, func(p pageApp) bool {
		return p.Health[id1] == "up" && p.Health[id2] == "up" && p.Count == "2/2 up"
	})
	if err != nil {
		t.Fatalf("app %s on the page %+v, want both backends (%s, %s) up: %v", appName, both, id1, id2, err)
	}
	chromiumtest.Screenshot(t, ctx, dir, "gateway-status-up.png", 2*refresh)

	b2.srv.Close()
	stopped := time.Now()
	// One refresh, plus the checks that notice (fall × interval, each
	// failing within its timeout), plus a second for the reload and this
	// polling.
	within := refresh + time.Duration(hc.Fall)*(hc.Interval.D()+hc.Timeout.D()) + time.Second
	after, err := chromiumtest.Eventually(ctx, within, read, func(p pageApp) bool {
		return p.Health[id2] == "down" && p.Health[id1] == "up"
	})
	took := time.Since(stopped)
	if err != nil {
		t.Fatalf("%v after backend %s stopped the page shows %+v, want it down (and %s up) within %v: %v", took, id2, after, id1, within, err)
	}
	t.Logf("the page showed %s down %v after it stopped (page refresh %v, health every %v, fall %d)",
		id2, took.Round(time.Millisecond), refresh, hc.Interval.D(), hc.Fall)
	if after.Row[id2] != "row-down" || after.Count != "1/2 up" {
		t.Errorf("down backend's row class %q and app count %q, want row-down and 1/2 up", after.Row[id2], after.Count)
	}
	chromiumtest.Screenshot(t, ctx, dir, "gateway-status-backend-down.png", 2*refresh)
}
