package logsink

// Syslog facilities and severities, and the bridge that carries logrus
// entries to a Sink with the severity of their level.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// Facility is a syslog facility (RFC 5424 section 6.2.1). The constants
// hold the code plus one, so that the zero value means "not set": Options
// resolve it to FacilityDaemon.
type Facility uint8

const (
	FacilityKern Facility = iota + 1
	FacilityUser
	FacilityMail
	FacilityDaemon
	FacilityAuth
	FacilitySyslog
	FacilityLPR
	FacilityNews
	FacilityUUCP
	FacilityCron
	FacilityAuthPriv
	FacilityFTP
	FacilityNTP
	FacilityAudit
	FacilityAlert
	FacilityClock
	FacilityLocal0
	FacilityLocal1
	FacilityLocal2
	FacilityLocal3
	FacilityLocal4
	FacilityLocal5
	FacilityLocal6
	FacilityLocal7
)

var facilityNames = [...]string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// ParseFacility reads a facility name as syslog.conf spells it: "daemon",
// "local0" ... "local7", and the others of RFC 5424's table.
func ParseFacility(name string) (Facility, error) {
	for i, n := range facilityNames {
		if n == name {
			return Facility(i + 1), nil
		}
	}
	return 0, fmt.Errorf("logsink: unknown syslog facility %q (want daemon, local0 ... local7, user, ...)", name)
}

func (f Facility) orDefault() Facility {
	if f == 0 || int(f) > len(facilityNames) {
		return FacilityDaemon
	}
	return f
}

// Code is the RFC 5424 numeric facility.
func (f Facility) Code() int { return int(f.orDefault()) - 1 }

func (f Facility) String() string { return facilityNames[f.Code()] }

// Severity is a syslog severity (RFC 5424 section 6.2.1), code plus one
// like Facility: the zero value means SeverityInfo.
type Severity uint8

const (
	SeverityEmergency Severity = iota + 1
	SeverityAlert
	SeverityCritical
	SeverityError
	SeverityWarning
	SeverityNotice
	SeverityInfo
	SeverityDebug
)

func (s Severity) orDefault() Severity {
	if s == 0 || s > SeverityDebug {
		return SeverityInfo
	}
	return s
}

// Code is the RFC 5424 numeric severity.
func (s Severity) Code() int { return int(s.orDefault()) - 1 }

// LogrusHook writes each logrus entry to a Sink as one line, with the
// syslog severity of its level (SeverityOf). Add it to a logger whose Out
// is io.Discard to send the process log to syslog or a file only (see
// AttachLogrus), or next to another Out to send it to both.
//
// Fire runs in the logging goroutine and costs a Format and a queue send:
// the process log, not the per-request path (that is AccessFormat's).
type LogrusHook struct {
	// Sink receives the lines. Required.
	Sink Sink
	// Formatter formats entries. Default &logrus.JSONFormatter{}; a syslog
	// receiver adds its own timestamp, so a TextFormatter with
	// DisableTimestamp suits syslog too.
	Formatter logrus.Formatter
	// LevelList lists the levels the hook fires for. Default all.
	LevelList []logrus.Level
}

var _ logrus.Hook = (*LogrusHook)(nil)

// fatalFlush bounds how long a fatal or panic entry waits to be written
// before logrus exits or panics.
const fatalFlush = 2 * time.Second

var defaultFormatter logrus.Formatter = &logrus.JSONFormatter{}

// Levels implements logrus.Hook.
func (h *LogrusHook) Levels() []logrus.Level {
	if h.LevelList == nil {
		return logrus.AllLevels
	}
	return h.LevelList
}

// Fire implements logrus.Hook. A fatal or panic entry is flushed before
// Fire returns (for at most two seconds), since logrus exits right after.
func (h *LogrusHook) Fire(e *logrus.Entry) error {
	f := h.Formatter
	if f == nil {
		f = defaultFormatter
	}
	b, err := f.Format(e)
	if err != nil {
		return err
	}
	if sw, ok := h.Sink.(SeverityWriter); ok {
		_, err = sw.WriteSeverity(SeverityOf(e.Level), b)
	} else {
		_, err = h.Sink.Write(b)
	}
	if err != nil {
		return err
	}
	if e.Level <= logrus.FatalLevel {
		if fl, ok := h.Sink.(Flusher); ok {
			ctx, cancel := context.WithTimeout(context.Background(), fatalFlush)
			defer cancel()
			return fl.Flush(ctx)
		}
	}
	return nil
}

// SeverityOf maps a logrus level to a syslog severity the way logrus's own
// hooks/syslog does: panic and fatal are critical, trace is debug.
func SeverityOf(l logrus.Level) Severity {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return SeverityCritical
	case logrus.ErrorLevel:
		return SeverityError
	case logrus.WarnLevel:
		return SeverityWarning
	case logrus.InfoLevel:
		return SeverityInfo
	}
	return SeverityDebug
}

// AttachLogrus sends everything log logs to s only: the logger's Out
// becomes io.Discard and a LogrusHook with the logger's current Formatter
// is added. Call it while building the logger, before it is shared.
func AttachLogrus(log *logrus.Logger, s Sink) {
	log.AddHook(&LogrusHook{Sink: s, Formatter: log.Formatter})
	log.SetOutput(io.Discard)
}
