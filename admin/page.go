package admin

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// assets holds the status page: one template and the stylesheet it inlines.
// The page loads nothing else, so it works offline and under a CSP of
// default-src 'none'.
//
//go:embed assets/status.html assets/status.css
var assets embed.FS

// Certificate expiry thresholds for the page's colours. ACME renews at a
// third of the lifetime left (30 days for 90-day certificates), so a
// certificate under certWarn has missed at least a week of renewals.
const (
	certWarn = 14 * 24 * time.Hour
	certBad  = 3 * 24 * time.Hour
)

func loadAssets() (*template.Template, template.CSS, error) {
	css, err := assets.ReadFile("assets/status.css")
	if err != nil {
		return nil, "", fmt.Errorf("admin: %w", err)
	}
	t, err := template.ParseFS(assets, "assets/status.html")
	if err != nil {
		return nil, "", fmt.Errorf("admin: %w", err)
	}
	return t, template.CSS(css), nil
}

// The view types hold the page's text, formatted in Go so the template
// stays a layout with no logic but loops and conditions.
type pageView struct {
	Refresh           int
	CSS               template.CSS
	Version           string
	Started           string
	StartedAt         string
	ConfigHash        string
	LogDropped        uint64
	ProcessLogDropped uint64
	Cluster           *Cluster
	Generated         string
	Listeners         []Listener
	Apps              []appView
	Certificates      []certView
}

type appView struct {
	Name, Hosts, Path, Balance string
	Sticky                     bool
	Queue                      int64
	Up, Total                  int
	Backends                   []backendView
}

type backendView struct {
	ID, Addr      string
	Status        string // up, down, drain or maint: the row's colour
	Health        string // up or down
	AdminState    string
	Weight        int
	Group         string
	Active        bool
	InFlight      int64
	Requests      uint64
	Latency       string
	LastError     string
	LastErrorAgo  string
	LastErrorAt   string
	Sticky        int
	LastStickyAgo string
	LastStickyAt  string
}

type certView struct {
	Names, Issuer, Source string
	Expires, NotAfter     string
	Class                 string // ok, warn or bad
}

func (h *handler) statusPage(w http.ResponseWriter, r *http.Request) {
	v := h.view(h.src.State(), time.Now())
	var buf bytes.Buffer
	if err := h.page.ExecuteTemplate(&buf, "status.html", v); err != nil {
		http.Error(w, "admin: rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func (h *handler) view(st State, now time.Time) pageView {
	v := pageView{
		Refresh:           h.cfg.refreshSeconds(),
		CSS:               h.css,
		Version:           st.Version,
		Started:           relTime(st.Started, now),
		StartedAt:         stamp(st.Started),
		ConfigHash:        st.ConfigHash,
		LogDropped:        st.LogDropped,
		ProcessLogDropped: st.ProcessLogDropped,
		Cluster:           st.Cluster,
		Generated:         now.UTC().Format("15:04:05 MST"),
		Listeners:         st.Listeners,
	}
	for _, a := range st.Apps {
		av := appView{
			Name: a.Name, Hosts: strings.Join(a.Hosts, ", "), Path: a.Path,
			Balance: a.Balance, Sticky: a.Sticky, Queue: a.Queue, Total: len(a.Backends),
		}
		for _, b := range a.Backends {
			bv := backendView{
				ID: b.ID, Addr: b.Addr, Health: "down", AdminState: b.AdminState,
				Weight: b.Weight, Active: b.Active, InFlight: b.InFlight, Requests: b.Requests,
				Latency: fmtLatency(b.Latency), LastError: b.LastError,
				LastErrorAgo: relTime(b.LastErrorAt, now), LastErrorAt: stamp(b.LastErrorAt),
				Sticky: b.StickySessions, LastStickyAgo: relTime(b.LastStickyAt, now), LastStickyAt: stamp(b.LastStickyAt),
			}
			if b.Up {
				bv.Health = "up"
				av.Up++
			}
			if bv.AdminState == "" {
				bv.AdminState = StateReady
			}
			bv.Group = "p" + strconv.Itoa(b.Priority)
			if b.Active {
				bv.Group += " active"
			} else {
				bv.Group += " standby"
			}
			switch {
			case bv.AdminState == StateMaint:
				bv.Status = "maint"
			case !b.Up:
				bv.Status = "down"
			case bv.AdminState == StateDrain:
				bv.Status = "drain"
			default:
				bv.Status = "up"
			}
			av.Backends = append(av.Backends, bv)
		}
		v.Apps = append(v.Apps, av)
	}
	for _, c := range st.Certificates {
		cv := certView{
			Names: strings.Join(c.Names, ", "), Issuer: c.Issuer, Source: c.Source,
			NotAfter: stamp(c.NotAfter), Class: "ok",
		}
		left := c.NotAfter.Sub(now)
		cv.Expires = relTime(c.NotAfter, now)
		switch {
		case left <= 0:
			cv.Expires, cv.Class = "expired "+cv.Expires, "bad"
		case left < certBad:
			cv.Class = "bad"
		case left < certWarn:
			cv.Class = "warn"
		}
		v.Certificates = append(v.Certificates, cv)
	}
	return v
}

// relTime says when t is relative to now, in the largest whole unit:
// "3m ago", "in 41d", "now" within a second, "never" for the zero time.
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var n string
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		n = strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		n = strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		n = strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		n = strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	if future {
		return "in " + n
	}
	return n + " ago"
}

// fmtLatency prints a latency with two or three significant digits;
// zero (no sample yet) is a dash.
func fmtLatency(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return strconv.Itoa(int(d/time.Microsecond)) + "µs"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	case d < time.Second:
		return strconv.Itoa(int(d/time.Millisecond)) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// stamp is the exact time, shown as a tooltip next to a relative one.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
