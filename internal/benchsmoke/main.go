// Command benchsmoke is make test's benchmark smoke run: tlsedge against
// goref, a naive Go proxy (net/http + httputil.ReverseProxy), in the two
// keep-alive scenarios of the shared benchmark harness, one short round:
//
//	S1  HTTPS keep-alive, 1 KiB responses   wrk -t1 -c64 --latency
//	S4  HTTP/2 over TLS, 1 KiB responses    h2load -t1 -c32 -m10
//
// It fails only when tlsedge serves fewer good answers per second than
// goref in the same run (a ratio below -min-ratio, 1.0): a ratio, so that
// the speed of the machine cancels out, and a floor tlsedge clears by a
// wide margin (about 1.6x in S1 and 1.2x in S4 on the harness), so that
// only a real regression trips it. The two figures of a ratio are taken
// seconds apart (both proxies run, the one not measured idles), so that
// slow changes in the machine's load hit both. A scenario below the floor
// is measured once more, both peers restarted and measured in the other
// order, and judged on that second measurement; the output says so. The
// table also gives the ratio per second of proxy CPU time, which other
// work on the machine disturbs less: it is there to read, not to judge.
//
// As in the harness, the proxies run on core 0 with GOMAXPROCS=1, and the
// loader and the origin share core 1; tlsedge runs its default chain with
// sticky sessions and the access log on. Everything is on
// loopback, on ports chosen at run time, with a certificate generated at
// run time; every loader runs under timeout(1), and every process is
// stopped by the PID it was started with. It needs wrk and h2load (make
// test-deps installs them) and runs from the repository's root:
//
//	go run ./internal/benchsmoke            (make bench-smoke)
//
// Exit status: 0 when every ratio holds, 1 when one does not, 2 when the
// run could not measure (a tool missing, a build or a process failing).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the run's settings: flags, then what setup found and made.
type config struct {
	goCmd     string
	dur       time.Duration // per measurement
	minRatio  float64
	remeasure bool
	proxyCPU  int
	loaderCPU int
	quietWait time.Duration // how long, in all, to wait for other benchmarks to end
	quiet     quiet
	keep      bool
	pin       bool // taskset works for both cores
	dir       string
	cert, key string
	origins   string // "127.0.0.1:P1,127.0.0.1:P2"
	bin       map[string]string
}

type scenario struct {
	id, title string
	run       func(ctx context.Context, c *config, url, file string) (load, error)
}

var scenarios = []scenario{
	{"S1", "HTTPS keep-alive 1 KiB, wrk -c64", func(ctx context.Context, c *config, url, file string) (load, error) {
		out, err := runLoader(ctx, file, c.loaderCPU, c.dur+30*time.Second,
			"wrk", "-t1", "-c64", "-d"+secs(c.dur), "--latency", url+"/small")
		if err != nil {
			return load{}, err
		}
		return parseWrk(out)
	}},
	{"S4", "HTTP/2 1 KiB, h2load -c32 -m10", func(ctx context.Context, c *config, url, file string) (load, error) {
		out, err := runLoader(ctx, file, c.loaderCPU, c.dur+30*time.Second,
			"h2load", "-t1", "-c32", "-m10", "-D", strconv.Itoa(int(c.dur/time.Second)), "--warm-up-time=1", url+"/small")
		if err != nil {
			return load{}, err
		}
		return parseH2load(out)
	}},
}

// peers are measured in this order in the first round, and in the
// reverse order when a scenario is measured again.
var peers = []string{"tlsedge", "goref"}

func main() { os.Exit(run()) }

func run() int {
	c := &config{bin: map[string]string{}}
	flag.StringVar(&c.goCmd, "go", envOr("GO", "go"), "the go command that builds tlsedge, goref and the origin")
	flag.DurationVar(&c.dur, "d", 2*time.Second, "duration of each measurement (whole seconds)")
	flag.Float64Var(&c.minRatio, "min-ratio", 1.0, "fail when tlsedge's rate over goref's is below this")
	flag.BoolVar(&c.remeasure, "remeasure", true, "measure a scenario below -min-ratio once more and judge on that")
	flag.IntVar(&c.proxyCPU, "proxy-cpu", 0, "core of the proxy under test")
	flag.IntVar(&c.loaderCPU, "loader-cpu", 1, "core of the loader and the origin")
	flag.DurationVar(&c.quietWait, "wait", 5*time.Minute, "wait at most this long in all for other benchmarks' loaders (wrk, h2load, hsload, idleconns) to finish")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (binaries, logs, loader output)")
	flag.Parse()
	if c.dur < time.Second || c.dur%time.Second != 0 {
		fmt.Fprintln(os.Stderr, "bench-smoke: -d must be whole seconds, at least 1s")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	c.quiet.deadline = start.Add(c.quietWait)
	var err error
	if c.dir, err = os.MkdirTemp("", "tlsedge-bench-smoke-"); err != nil {
		return fail(err)
	}
	code := measure(ctx, c)
	if c.keep || code != 0 && ctx.Err() == nil {
		logf("work directory kept: %s", c.dir)
	} else {
		os.RemoveAll(c.dir)
	}
	logf("done in %s", time.Since(start).Round(time.Second))
	return code
}

// measure runs everything and returns the exit status.
func measure(ctx context.Context, c *config) int {
	if err := setup(ctx, c); err != nil {
		return fail(err)
	}
	pinning := fmt.Sprintf("proxies on core %d (GOMAXPROCS=1), loader and origin on core %d", c.proxyCPU, c.loaderCPU)
	if !c.pin {
		pinning = "nothing pinned (taskset cannot use both cores here): expect noise"
	}
	logf("tlsedge vs goref, %s per scenario, one round; %s", c.dur, pinning)
	if t0 := readCPUTimes(); len(t0) > 0 {
		time.Sleep(time.Second)
		t1 := readCPUTimes()
		var now []string
		for core := range len(t1) {
			now = append(now, fmt.Sprintf("%.0f%%", busy(t0, t1, core)))
		}
		logf("cores busy before the run (other work; it adds noise): %s", strings.Join(now, " / "))
	}

	origin, err := startServer(c.dir, "origin", c.loaderCPU, c.bin["origin"], "-listen", c.origins)
	if err != nil {
		return fail(err)
	}
	defer origin.stop()
	for _, a := range strings.Split(c.origins, ",") {
		if err := origin.waitPort(ctx, a); err != nil {
			return fail(err)
		}
	}

	first := map[string]map[string]load{} // scenario -> peer -> load
	if err := measureRound(ctx, c, "1", peers, scenarios, first); err != nil {
		return fail(err)
	}
	second := map[string]map[string]load{} // the scenarios measured again
	var again []scenario
	for _, s := range scenarios {
		if r := ratio(first[s.id]); r < c.minRatio {
			again = append(again, s)
		}
	}
	if len(again) > 0 && c.remeasure {
		ids := make([]string, len(again))
		for i, s := range again {
			ids[i] = s.id
		}
		logf("%s below %.2fx: measuring once more, goref first, and judging on that", strings.Join(ids, " and "), c.minRatio)
		reversed := slices.Clone(peers)
		slices.Reverse(reversed)
		if err := measureRound(ctx, c, "2", reversed, again, second); err != nil {
			return fail(err)
		}
	}

	fmt.Printf("\n%-36s %10s %10s %7s %9s\n", "scenario (good answers/s)", "tlsedge", "goref", "ratio", "per CPU-s")
	var below []string
	for _, s := range scenarios {
		final, note := first[s.id], ""
		if m, ok := second[s.id]; ok {
			final, note = m, fmt.Sprintf("  (re-measured; first %.2fx)", ratio(first[s.id]))
		}
		r := ratio(final)
		fmt.Printf("%-36s %10s %10s %6.2fx %8.2fx%s\n", s.id+" "+s.title,
			thousands(final["tlsedge"].OK()), thousands(final["goref"].OK()), r, cpuRatio(final), note)
		if final["goref"].OK() == 0 {
			return fail(fmt.Errorf("%s: goref answered nothing good: nothing to compare with (see %s)", s.id, c.dir))
		}
		if r < c.minRatio {
			below = append(below, fmt.Sprintf("%s %.2fx", s.id, r))
		}
	}
	fmt.Println()
	if len(below) > 0 {
		logf("FAIL: tlsedge below %.2fx goref: %s", c.minRatio, strings.Join(below, ", "))
		return 1
	}
	logf("ok: tlsedge at or above %.2fx goref in every scenario", c.minRatio)
	return 0
}

// setup checks the tools, builds the three programs, and writes the
// certificate; it also picks the origin's ports.
func setup(ctx context.Context, c *config) error {
	for _, t := range []struct{ cmd, pkg string }{{"wrk", "wrk"}, {"h2load", "nghttp2-client"}, {"timeout", "coreutils"}} {
		if _, err := exec.LookPath(t.cmd); err != nil {
			return fmt.Errorf("%s not found: install the Debian package %s (make test-deps does)", t.cmd, t.pkg)
		}
	}
	c.pin = runtime.NumCPU() >= 2 &&
		exec.Command("taskset", "-c", strconv.Itoa(c.proxyCPU), "true").Run() == nil &&
		exec.Command("taskset", "-c", strconv.Itoa(c.loaderCPU), "true").Run() == nil
	if !c.pin {
		c.proxyCPU, c.loaderCPU = -1, -1
	}

	logf("building tlsedge, goref and the origin into %s", c.dir)
	build := exec.CommandContext(ctx, c.goCmd, "build", "-o", c.dir+string(filepath.Separator),
		"./cmd/tlsedge", "./internal/benchsmoke/goref", "./internal/benchsmoke/origin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("go build: %w", err)
	}
	for _, n := range []string{"tlsedge", "goref", "origin"} {
		c.bin[n] = filepath.Join(c.dir, n)
	}

	var err error
	if c.cert, c.key, err = writeCert(c.dir); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	var addrs []string
	for range 2 {
		p, err := freePort()
		if err != nil {
			return err
		}
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	c.origins = strings.Join(addrs, ",")
	return os.MkdirAll(filepath.Join(c.dir, "state"), 0o700)
}

// measureRound starts both proxies (each on a fresh port, both pinned to
// the proxy core: the one not measured is idle), warms each up, then
// measures each scenario on each peer in order, so that the two figures a
// ratio compares are taken seconds apart. It records the loads in into
// and stops both proxies.
func measureRound(ctx context.Context, c *config, round string, order []string, ss []scenario, into map[string]map[string]load) error {
	urls := map[string]string{}
	procs := map[string]*server{}
	for _, peer := range order {
		s, url, err := startPeer(ctx, c, peer, round)
		if s != nil {
			defer s.stop()
		}
		if err != nil {
			return err
		}
		procs[peer], urls[peer] = s, url
	}
	for _, peer := range order {
		if err := c.quiet.wait(ctx); err != nil {
			return err
		}
		// Warm-up, as the harness: connections, pools and caches filled.
		if _, err := runLoader(ctx, filepath.Join(c.dir, "warmup-"+peer+"-"+round+".txt"), c.loaderCPU, 15*time.Second,
			"wrk", "-t1", "-c16", "-d1s", urls[peer]+"/small"); err != nil {
			return err
		}
	}
	for _, sc := range ss {
		for _, peer := range order {
			if err := c.quiet.wait(ctx); err != nil {
				return err
			}
			s := procs[peer]
			file := filepath.Join(c.dir, fmt.Sprintf("out-%s-%s-%s.txt", round, peer, sc.id))
			t0, p0, w0 := readCPUTimes(), procCPU(s.cmd.Process.Pid), time.Now()
			l, err := sc.run(ctx, c, urls[peer], file)
			t1, p1, wall := readCPUTimes(), procCPU(s.cmd.Process.Pid), time.Since(w0)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				// The proxy may have died under load: that is a result (no
				// good answers), not a failure to measure.
				logf("  %s %s: %v", sc.id, peer, err)
				l = load{}
			}
			if p0 >= 0 && p1 > p0 {
				l.CPU = (p1 - p0) / wall.Seconds()
			}
			if !s.alive() {
				logf("  %s %s: the proxy exited during the measurement: %v (log: %s)", sc.id, peer, s.err, filepath.Join(c.dir, peer+"-"+round+".log"))
				l = load{}
			}
			if into[sc.id] == nil {
				into[sc.id] = map[string]load{}
			}
			into[sc.id][peer] = l
			logf("  %s %-7s %s", sc.id, peer, describe(l, busy(t0, t1, c.proxyCPU), busy(t0, t1, c.loaderCPU)))
			if others := foreignLoaders(); len(others) > 0 {
				logf("  (another benchmark started meanwhile, the figure is disturbed: %s)", strings.Join(others, ", "))
			}
		}
	}
	return nil
}

// startPeer starts peer on a fresh loopback port and waits until it
// listens; it returns the server to stop even with an error.
func startPeer(ctx context.Context, c *config, peer, round string) (*server, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var argv []string
	switch peer {
	case "tlsedge":
		// The default chain, sticky sessions and the access log on: what
		// the harness's "tlsedge" peer runs.
		argv = []string{c.bin["tlsedge"], "run",
			"--listen", addr, "--http-listen", "off", "--admin", "off",
			"--cert", c.cert, "--key", c.key, "--state-dir", filepath.Join(c.dir, "state"),
			"--app", "127.0.0.1=" + c.origins + ";sticky",
			"--access-log", filepath.Join(c.dir, "access-"+round+".log"), "--log-level", "warn"}
	case "goref":
		argv = []string{c.bin["goref"], "-listen", addr, "-backends", c.origins, "-cert", c.cert, "-key", c.key}
	default:
		return nil, "", fmt.Errorf("unknown peer %q", peer)
	}
	s, err := startServer(c.dir, peer+"-"+round, c.proxyCPU, argv...)
	if err != nil {
		return nil, "", err
	}
	return s, "https://" + addr, s.waitPort(ctx, addr)
}

// describe is one measurement's line. The proxy's CPU share next to its
// core's busy figure shows foreign load: the core is busier than the
// proxy by the kernel's network work (5-15 points) and by anything else.
func describe(l load, core0, core1 float64) string {
	s := thousands(l.OK()) + " good answers/s"
	if l.Bad > 0 {
		s += fmt.Sprintf(" (%d of %d bad)", l.Bad, l.Requests)
	}
	if l.P99 != "" {
		s += fmt.Sprintf(", p50 %s p99 %s", l.P50, l.P99)
	}
	if l.CPU > 0 {
		s += fmt.Sprintf(", %s per proxy CPU-s (proxy %.0f%% of a core)", thousands(l.PerCPU()), 100*l.CPU)
	}
	if core0 >= 0 && core1 >= 0 {
		s += fmt.Sprintf(", cores busy %.0f%% / %.0f%%", core0, core1)
	}
	return s
}

// ratio is tlsedge's good-answer rate over goref's; 0 when goref has none.
func ratio(m map[string]load) float64 {
	g := m["goref"].OK()
	if g == 0 {
		return 0
	}
	return m["tlsedge"].OK() / g
}

// cpuRatio is the same per second of proxy CPU time (informative: the
// verdict is on ratio); 0 when unknown.
func cpuRatio(m map[string]load) float64 {
	g := m["goref"].PerCPU()
	if g == 0 {
		return 0
	}
	return m["tlsedge"].PerCPU() / g
}

// thousands formats a rate as a whole number with thousands separators.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func secs(d time.Duration) string { return strconv.Itoa(int(d/time.Second)) + "s" }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] bench-smoke: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fail(err error) int {
	if errors.Is(err, context.Canceled) {
		logf("interrupted")
	} else {
		logf("cannot measure: %v", err)
	}
	return 2
}
