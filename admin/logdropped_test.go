package admin

import (
	"strings"
	"testing"
	"time"
)

// The access log's and the process log's dropped lines are shown apart,
// each marked bad once it is not zero, and both are in GET /api/state.
func TestStatusPageShowsDroppedLogLines(t *testing.T) {
	src := newFake(time.Now())
	src.st.LogDropped, src.st.ProcessLogDropped = 0, 7
	ts := startServer(t, src, Config{})
	page := call(t, "GET", ts.URL+"/", "", "").body
	for _, want := range []string{
		`<dt>access log lines dropped</dt><dd data-log="access">0</dd>`,
		`<dt>process log lines dropped</dt><dd data-log="process" class="bad">7</dd>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	api := call(t, "GET", ts.URL+"/api/state", "", "").body
	for _, want := range []string{`"log_dropped": 0`, `"process_log_dropped": 7`} {
		if !strings.Contains(api, want) {
			t.Errorf("/api/state lacks %s", want)
		}
	}
}
