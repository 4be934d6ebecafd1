package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one long-running process we started (the origin or a proxy),
// stopped by its PID and nothing else.
type server struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's error, once exited is closed
}

// startServer runs argv pinned to cpu (cpu < 0: not pinned) with
// GOMAXPROCS=1, its output in dir/NAME.log.
func startServer(dir, name string, cpu int, argv ...string) (*server, error) {
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	// taskset execs argv in place, so the PID we hold is the server's.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitPort waits until addr accepts a connection, the server exits, or
// 15 s pass.
func (s *server) waitPort(ctx context.Context, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before listening on %s: %v", s.name, addr, s.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after 15s", s.name, addr)
		}
	}
}

// alive reports whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the PID we started, SIGKILL after 5 s, and waits
// for it to be reaped.
func (s *server) stop() {
	if s == nil || !s.alive() {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited since alive
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill() //nolint:errcheck
		<-s.exited
	}
}

// freePort returns a loopback port nobody listens on now. Another process
// may take it before our server binds it; the server then fails to start
// and the run says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// writeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1
// and localhost, valid for a day, to dir/cert.pem and dir/key.pem (0600),
// like the harness's certs/gen.sh. Nothing of it outlives the run.
func writeCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// loaderNames are the load generators of the shared benchmark harness
// (and ours): while one of them runs, someone is measuring on these cores.
var loaderNames = []string{"wrk", "h2load", "hsload", "idleconns"}

// foreignLoaders lists the loader processes running now ("wrk (pid 123)").
// Ours are never running when it is called.
func foreignLoaders() []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		for _, l := range loaderNames {
			if name == l {
				out = append(out, fmt.Sprintf("%s (pid %d)", name, pid))
			}
		}
	}
	return out
}

// quiet makes the run wait while another benchmark's loader runs, so that
// neither run disturbs the other, within one budget for the whole run:
// past it, the run measures anyway, with a warning (the ratio still holds
// roughly under foreign load).
type quiet struct {
	deadline time.Time
	gaveUp   bool
}

func (q *quiet) wait(ctx context.Context) error {
	said := false
	for {
		busy := foreignLoaders()
		if len(busy) == 0 || q.gaveUp {
			return nil
		}
		if time.Now().After(q.deadline) {
			logf("warning: another benchmark is still running (%s): no more waiting, measuring anyway", strings.Join(busy, ", "))
			q.gaveUp = true
			return nil
		}
		if !said {
			logf("waiting (until %s at most) for another benchmark to finish: %s", q.deadline.Format("15:04:05"), strings.Join(busy, ", "))
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// procCPU is the CPU time (user and system) process pid has used, in
// seconds, from /proc/PID/stat; -1 when unknown.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:])) // field 3 onwards
	if i < 0 || len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // utime, field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64) // stime, field 15
	if err1 != nil || err2 != nil {
		return -1
	}
	return float64(ut+st) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go runs on.
const clockTicks = 100

// cpuTimes is busy and total jiffies per core, from /proc/stat.
type cpuTimes map[int][2]uint64

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	t := cpuTimes{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var total, idle uint64
		for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
			v, _ := strconv.ParseUint(s, 10, 64)
			total += v
			if i == 3 || i == 4 {
				idle += v
			}
		}
		t[n] = [2]uint64{total - idle, total}
	}
	return t
}

// busy is core's busy percentage between two snapshots, -1 when unknown.
func busy(a, b cpuTimes, core int) float64 {
	x, ok1 := a[core]
	y, ok2 := b[core]
	if !ok1 || !ok2 || y[1] <= x[1] {
		return -1
	}
	return 100 * float64(y[0]-x[0]) / float64(y[1]-x[1])
}
