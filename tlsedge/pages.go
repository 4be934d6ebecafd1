package tlsedge

import (
	"html"
	"log"
	"net/http"
	"strconv"

	"github.com/sirupsen/logrus"
)

// writePage answers with a small self-contained HTML page. Nothing about
// the gateway's internals goes into it.
func writePage(w http.ResponseWriter, status int, title, msg string) {
	body := "<!doctype html><html><head><meta charset=utf-8><title>" + strconv.Itoa(status) + " " + html.EscapeString(title) +
		"</title><style>body{font:16px system-ui,sans-serif;margin:4em auto;max-width:36em;color:#333}</style></head><body><h1>" +
		html.EscapeString(title) + "</h1><p>" + html.EscapeString(msg) + "</p></body></html>\n"
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body)) //nolint:errcheck // the client went away
}

// newStdLogger routes net/http's internal messages (TLS handshake errors
// from scanners, mostly) into logrus at debug level: useful when chasing a
// problem, noise otherwise.
func newStdLogger(e *logrus.Entry) *log.Logger {
	return log.New(e.WriterLevel(logrus.DebugLevel), "", 0)
}
