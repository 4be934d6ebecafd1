package certs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// certmagic logs through zap, and chattily: a dozen Info lines per order.
// tlsedge's operators get one line per obtain, renewal and failure instead
// (acmeEvents, below), so certmagic's own lines go to debug, except its
// warnings and errors that no event reports (storage, ARI, OCSP trouble).

// eventReported are certmagic error messages that a cert_failed event
// reports too; logging both would say every failure twice.
var eventReported = map[string]bool{
	"could not get certificate from issuer": true,
	"will retry":                            true,
	"job failed":                            true,
	"final attempt; giving up":              true,
	// acmez retries each request three times before the order fails.
	"HTTP request failed; retrying": true,
	"final attempt; giving up until next scheduled renewal check finds the certificate still needs renewal": true,
}

// zapToLogrus is a zapcore.Core writing into a logrus entry.
type zapToLogrus struct {
	log    *logrus.Entry
	fields []zapcore.Field
}

func newZapLogger(log *logrus.Entry) *zap.Logger {
	return zap.New(&zapToLogrus{log: log})
}

func (c *zapToLogrus) Enabled(l zapcore.Level) bool {
	return c.log.Logger.IsLevelEnabled(c.level(l, ""))
}

// level maps a certmagic message to the logrus level tlsedge shows it at.
func (c *zapToLogrus) level(l zapcore.Level, msg string) logrus.Level {
	if l < zapcore.WarnLevel || eventReported[msg] {
		return logrus.DebugLevel
	}
	return logrus.WarnLevel
}

func (c *zapToLogrus) With(fields []zapcore.Field) zapcore.Core {
	return &zapToLogrus{log: c.log, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *zapToLogrus) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.log.Logger.IsLevelEnabled(c.level(e.Level, e.Message)) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapToLogrus) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	entry := c.log.WithFields(logrus.Fields(enc.Fields))
	if e.LoggerName != "" {
		entry = entry.WithField("logger", e.LoggerName)
	}
	entry.Log(c.level(e.Level, e.Message), e.Message)
	return nil
}

func (c *zapToLogrus) Sync() error { return nil }

// acmeEventWanted keeps certmagic from building the events tlsedge does
// not use; tls_get_certificate, on every handshake, was a third of the
// lookup's cost.
func acmeEventWanted(event string) bool {
	switch event {
	case "cert_obtaining", "cert_obtained", "cert_failed", "cached_managed_cert":
		return true
	}
	return false
}

// onEvent turns certmagic's events into tlsedge's log lines and wakes
// handshakes waiting for a certificate.
func (a *ACME) onEvent(ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtaining":
		renewal, _ := data["renewal"].(bool)
		a.ready.started(str(data["identifier"]))
		a.log.WithFields(logrus.Fields{"host": data["identifier"], "ca": a.caURL, "renewal": renewal}).Debug("ordering certificate")
	case "cert_obtained":
		renewal, _ := data["renewal"].(bool)
		msg := "certificate obtained"
		if renewal {
			msg = "certificate renewed"
		}
		a.log.WithFields(logrus.Fields{"host": data["identifier"], "ca": a.caURL}).Info(msg)
	case "cert_failed":
		renewal, _ := data["renewal"].(bool)
		name := str(data["identifier"])
		err, _ := data["error"].(error)
		a.ready.failed(name, err)
		f := logrus.Fields{"host": name, "ca": a.caURL, "reason": reason(err), "retry": "with backoff"}
		if rem, ok := data["remaining"].(time.Duration); ok {
			f["remaining"] = rem.Round(time.Second).String()
		}
		msg := "certificate order failed"
		if renewal {
			msg = "certificate renewal failed; serving the current certificate"
		}
		a.log.WithFields(f).Error(msg)
	case "cached_managed_cert":
		if sans, ok := data["sans"].([]string); ok {
			a.ready.cached(sans)
		}
	}
	return nil
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// reason is an order error in one line, without certmagic's "[name]
// Obtain:" prefixes that the host field already says.
func reason(err error) string {
	if err == nil {
		return "unknown"
	}
	msg := err.Error()
	for {
		i := strings.Index(msg, "] ")
		if !strings.HasPrefix(msg, "[") || i < 0 {
			break
		}
		msg = strings.TrimPrefix(msg[i+2:], "Obtain: ")
		msg = strings.TrimPrefix(msg, "Renew: ")
	}
	return strings.ReplaceAll(msg, "\n", " ")
}
