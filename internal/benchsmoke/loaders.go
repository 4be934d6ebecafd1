package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// load is what one loader run measured.
type load struct {
	RPS      float64 // the loader's requests per second
	Requests int64   // responses counted
	Bad      int64   // of which not 2xx, plus socket or stream errors
	P50, P99 string  // wrk's latency percentiles, as it prints them
	Proto    string  // h2load's negotiated protocol
	// CPU is the proxy's CPU time over the loader's run time (1 = one
	// core all along), filled in by the caller; 0 when unknown.
	CPU float64
}

// OK is the rate of good answers: a proxy that answered fast with errors
// (a 502 page is cheap) must not look faster than one that proxied.
func (l load) OK() float64 {
	if l.Requests <= 0 || l.Bad >= l.Requests {
		return 0
	}
	return l.RPS * float64(l.Requests-l.Bad) / float64(l.Requests)
}

// PerCPU is the rate of good answers per second of the proxy's CPU time:
// what the proxy costs, whatever else ran on its core. 0 when unknown.
func (l load) PerCPU() float64 {
	if l.CPU <= 0 {
		return 0
	}
	return l.OK() / l.CPU
}

// parseWrk reads wrk's report:
//
//	  128256 requests in 8.00s, 153.38MB read
//	  Socket errors: connect 0, read 3, write 0, timeout 0
//	  Non-2xx or 3xx responses: 12
//	Requests/sec:  16024.39
func parseWrk(out string) (load, error) {
	var l load
	var haveRPS, haveReq bool
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return l, fmt.Errorf("wrk: request count %q: %w", f[0], err)
			}
			l.Requests, haveReq = n, true
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return l, fmt.Errorf("wrk: rate %q: %w", f[1], err)
			}
			l.RPS, haveRPS = v, true
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			// connect N, read N, write N, timeout N
			for i := 3; i < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				l.Bad += n
			}
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			l.Bad += n
		case len(f) == 2 && f[0] == "50%":
			l.P50 = f[1]
		case len(f) == 2 && f[0] == "99%":
			l.P99 = f[1]
		}
	}
	if !haveRPS || !haveReq {
		return l, fmt.Errorf("wrk: no result in its output")
	}
	return l, nil
}

// parseH2load reads h2load's report:
//
//	finished in 9.00s, 12809.00 req/s, 12.83MB/s
//	requests: 102472 total, 102472 started, 102472 done, 102472 succeeded, 0 failed, 0 errored, 0 timeout
//	status codes: 102362 2xx, 0 3xx, 0 4xx, 0 5xx
//	Application protocol: h2
//
// (With --warm-up-time, "finished in" counts the warm-up but req/s does not.)
func parseH2load(out string) (load, error) {
	var l load
	var haveRPS, haveReq bool
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && f[0] == "finished" && f[1] == "in":
			v, err := strconv.ParseFloat(f[3], 64)
			if err != nil || f[4] != "req/s," {
				return l, fmt.Errorf("h2load: rate in %q", strings.TrimSpace(line))
			}
			l.RPS, haveRPS = v, true
		case len(f) >= 15 && f[0] == "requests:":
			// requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout
			done, err := strconv.ParseInt(f[5], 10, 64)
			if err != nil {
				return l, fmt.Errorf("h2load: done count in %q", strings.TrimSpace(line))
			}
			l.Requests, haveReq = done, true
			failed, _ := strconv.ParseInt(f[9], 10, 64) // errored and timed out included
			l.Bad += failed
		case len(f) >= 10 && f[0] == "status" && f[1] == "codes:":
			// status codes: N 2xx, N 3xx, N 4xx, N 5xx
			for _, i := range []int{4, 6, 8} {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				l.Bad += n
			}
		case len(f) == 3 && f[0] == "Application" && f[1] == "protocol:":
			l.Proto = f[2]
		}
	}
	if !haveRPS || !haveReq {
		return l, fmt.Errorf("h2load: no result in its output")
	}
	if l.Proto != "h2" {
		// Not HTTP/2 over TLS: not the scenario, and nothing to compare.
		l.Bad = l.Requests
	}
	return l, nil
}

// runLoader runs argv on core cpu (cpu < 0: not pinned) under timeout(1),
// bounded to limit, its output in file; on ctx's end it is sent SIGTERM,
// which timeout passes on to the loader.
func runLoader(ctx context.Context, file string, cpu int, limit time.Duration, argv ...string) (string, error) {
	name := argv[0]
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	secs := strconv.Itoa(int(limit.Round(time.Second) / time.Second))
	argv = append([]string{"timeout", "-k", "5", secs}, argv...)
	f, err := os.Create(file)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()
	f.Close()
	out, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	if runErr != nil {
		return string(out), fmt.Errorf("%s: %w (output in %s): %s", name, runErr, file, tail(string(out), 3))
	}
	return string(out), nil
}

// tail returns the last n lines of s, for an error message.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
