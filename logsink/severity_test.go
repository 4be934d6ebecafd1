package logsink

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestLogrusHook sends a logger's entries to a unixgram syslog socket and
// reads each one's severity back.
func TestLogrusHook(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Open("unixgram://"+path, Options{Hostname: "edge-1", Facility: FacilityDaemon})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	log := logrus.New()
	log.SetLevel(logrus.TraceLevel)
	log.Formatter = &logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}
	exited := 0
	log.ExitFunc = func(int) { exited++ }
	AttachLogrus(log, s)

	entry := log.WithField("component", "test")
	entry.Trace("t")
	entry.Debug("d")
	entry.Info("i")
	entry.Warn("w")
	entry.Error("e")
	entry.Fatal("f") // flushed before ExitFunc
	func() {
		defer func() { recover() }()
		entry.Panic("p")
	}()
	tests := []struct {
		sev  Severity
		text string
	}{
		{SeverityDebug, "level=trace msg=t component=test"},
		{SeverityDebug, "level=debug msg=d"},
		{SeverityInfo, "level=info msg=i"},
		{SeverityWarning, "level=warning msg=w"},
		{SeverityError, "level=error msg=e"},
		{SeverityCritical, "level=fatal msg=f"},
		{SeverityCritical, "level=panic msg=p"},
	}
	for _, tt := range tests {
		m := parseSyslog(t, readDatagram(t, ln))
		checkHeader(t, m, "-")
		if m.pri != 3*8+tt.sev.Code() || !strings.Contains(m.msg, tt.text) || strings.HasSuffix(m.msg, "\n") {
			t.Errorf("got PRI %d %q, want %d and %q", m.pri, m.msg, 3*8+tt.sev.Code(), tt.text)
		}
	}
	if exited != 1 {
		t.Errorf("ExitFunc called %d times", exited)
	}
}

// TestLogrusHookFile: a hook next to the logger's own Out, for chosen
// levels only, with its default JSON formatter.
func TestLogrusHookFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "errors.log")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log := logrus.New()
	log.Out = &out
	log.AddHook(&LogrusHook{Sink: s, LevelList: []logrus.Level{logrus.ErrorLevel, logrus.WarnLevel}})
	log.Info("routine")
	log.WithField("backend", "ab12").Error("backend down")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil || bytes.Count(b, []byte("\n")) != 1 {
		t.Fatalf("file holds %q: %v", b, err)
	}
	if got["level"] != "error" || got["msg"] != "backend down" || got["backend"] != "ab12" {
		t.Errorf("file holds %v", got)
	}
	if !strings.Contains(out.String(), "routine") || !strings.Contains(out.String(), "backend down") {
		t.Errorf("the logger's own output lost lines: %q", out.String())
	}
}

func TestSeverityOf(t *testing.T) {
	want := map[logrus.Level]int{
		logrus.PanicLevel: 2, logrus.FatalLevel: 2, logrus.ErrorLevel: 3,
		logrus.WarnLevel: 4, logrus.InfoLevel: 6, logrus.DebugLevel: 7, logrus.TraceLevel: 7,
	}
	for l, code := range want {
		if got := SeverityOf(l).Code(); got != code {
			t.Errorf("SeverityOf(%v) = %d, want %d", l, got, code)
		}
	}
	if Severity(0).Code() != 6 || Facility(0).Code() != 3 || FacilityLocal0.Code() != 16 || FacilityLocal7.String() != "local7" {
		t.Error("zero values or codes wrong")
	}
	if f, err := ParseFacility("local3"); err != nil || f != FacilityLocal3 {
		t.Errorf("ParseFacility(local3) = %v, %v", f, err)
	}
	if _, err := ParseFacility("local8"); err == nil || !strings.Contains(err.Error(), `"local8"`) {
		t.Errorf("ParseFacility(local8) = %v", err)
	}
}
