package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs/redisstore"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

// testNode is one instance's Node with its sticky-like ring, run until the
// test ends.
type testNode struct {
	n    *Node
	ring *Ring
	logs *lockedBuffer
	mu   sync.Mutex
	seen int // OnChange calls
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNode runs a node whose ring rotates every period, polling every
// 50ms.
func startNode(t *testing.T, url, id string, period time.Duration, cache string, seed [][]byte) *testNode {
	t.Helper()
	return startNodePoll(t, url, id, period, 50*time.Millisecond, cache, seed)
}

func startNodePoll(t *testing.T, url, id string, period, poll time.Duration, cache string, seed [][]byte) *testNode {
	t.Helper()
	tn := &testNode{logs: &lockedBuffer{}}
	log := logrus.New()
	log.Out = tn.logs
	n, err := Open(Options{URL: url, InstanceID: id, Poll: poll, MaxBackoff: 200 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Log: logrus.NewEntry(log)})
	if err != nil {
		t.Fatal(err)
	}
	tn.n = n
	tn.ring, err = n.NewRing(RingConfig{Name: "sticky", Size: 64, Period: period, Keep: 3, Settle: 100 * time.Millisecond,
		Cache: cache, Seed: seed, OnChange: func([][]byte) {
			tn.mu.Lock()
			tn.seen++
			tn.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		n.RunHeartbeat(ctx, func() Instance { return Instance{ConfigHash: "h-" + id, Version: "test"} })
	})
	wg.Go(func() { tn.ring.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); n.Close() })
	return tn
}

// accepts reports whether every node verifies what every node signs: the
// property a rotation must never break.
func accepts(nodes []*testNode) (bool, string) {
	keys := make([][][]byte, len(nodes))
	for i, tn := range nodes {
		keys[i] = tn.ring.Keys()
	}
	for i := range nodes {
		signer := keys[i][0]
		for j := range nodes {
			found := false
			for _, k := range keys[j] {
				if bytes.Equal(k, signer) {
					found = true
				}
			}
			if !found {
				return false, nodes[i].n.ID() + " signs with a key " + nodes[j].n.ID() + " does not hold"
			}
		}
	}
	return true, ""
}

// Three instances rotate a ring every 400ms for 4s, one of them reading
// Redis six times less often than the others: keys change several times,
// every instance always verifies what any other signs (the slow one holds
// back each activation until it has the key), and old keys beyond Keep are
// dropped.
func TestRingRotationNeverRefuses(t *testing.T) {
	rs := redistest.Start(t)
	seed := [][]byte{bytes.Repeat([]byte{7}, 64)}
	var nodes []*testNode
	for _, id := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, rs.URL(), id, 400*time.Millisecond, "", seed))
	}
	nodes = append(nodes, startNodePoll(t, rs.URL(), "slow", 400*time.Millisecond, 300*time.Millisecond, "", seed))
	signers := map[string]bool{}
	deadline := time.Now().Add(4 * time.Second)
	checks := 0
	for time.Now().Before(deadline) {
		if ok, why := accepts(nodes); !ok {
			t.Fatalf("after %d checks: %s", checks, why)
		}
		checks++
		signers[string(nodes[0].ring.Keys()[0])] = true
		time.Sleep(5 * time.Millisecond)
	}
	if len(signers) < 3 {
		t.Errorf("%d signing keys in 4s of 400ms periods, want at least 3", len(signers))
	}
	for _, tn := range nodes {
		if k := len(tn.ring.Keys()); k > 4 { // Keep 3, plus one pending
			t.Errorf("%s holds %d keys, want at most 4", tn.n.ID(), k)
		}
	}
	t.Logf("%d checks, %d signing keys over 4s, 0 refusals", checks, len(signers))
	if !strings.Contains(nodes[0].logs.String()+nodes[1].logs.String()+nodes[2].logs.String(), "every live instance holds the new key") {
		t.Error("no activation was logged")
	}
}

// Redis stopped: every instance keeps its keys, logs the outage once, and
// rotation stops; Redis back (empty, as after a crash without
// persistence): the keys are published again and rotation resumes.
func TestRingSurvivesRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	var nodes []*testNode
	for _, id := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, rs.URL(), id, 300*time.Millisecond, "", nil))
	}
	time.Sleep(700 * time.Millisecond)
	if ok, why := accepts(nodes); !ok {
		t.Fatal(why)
	}
	rs.Stop()
	held := nodes[0].ring.Keys()
	time.Sleep(1500 * time.Millisecond)
	if ok, why := accepts(nodes); !ok {
		t.Fatalf("during the outage: %s", why)
	}
	if !bytes.Equal(nodes[0].ring.Keys()[0], held[0]) {
		t.Error("the signing key changed while Redis was away")
	}
	for _, tn := range nodes {
		if !tn.n.Down() {
			t.Errorf("%s does not know Redis is down", tn.n.ID())
		}
		if c := strings.Count(tn.logs.String(), "redis unreachable"); c != 1 {
			t.Errorf("%s logged the outage %d times, want once", tn.n.ID(), c)
		}
	}
	rs.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for bytes.Equal(nodes[0].ring.Keys()[0], held[0]) {
		if time.Now().After(deadline) {
			t.Fatal("rotation did not resume within 5s of Redis coming back")
		}
		if ok, why := accepts(nodes); !ok {
			t.Fatalf("after Redis came back: %s", why)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tn := range nodes {
		if !strings.Contains(tn.logs.String(), "redis reachable again") {
			t.Errorf("%s did not log Redis coming back", tn.n.ID())
		}
	}
}

// An instance that ran once starts without Redis on its cached keys; one
// that never ran says it uses keys of its own.
func TestRingCacheStartsWithoutRedis(t *testing.T) {
	rs := redistest.Start(t)
	cache := filepath.Join(t.TempDir(), "sticky.ring")
	first := startNode(t, rs.URL(), "a", time.Hour, cache, nil)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := os.Stat(cache); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no cache file written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := os.Stat(cache); st.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", st.Mode().Perm())
	}
	want := first.ring.Keys()
	rs.Stop()
	again := startNode(t, rs.URL(), "a2", time.Hour, cache, nil)
	if got := again.ring.Keys(); !bytes.Equal(got[0], want[0]) {
		t.Error("a restart without Redis did not come up with the cached signing key")
	}
	fresh := startNode(t, rs.URL(), "b", time.Hour, filepath.Join(t.TempDir(), "none"), nil)
	if !strings.Contains(fresh.logs.String(), "no cached keys") {
		t.Errorf("a first start without Redis does not say what it lacks:\n%s", fresh.logs.String())
	}
}

func TestMain(m *testing.M) {
	// go-redis prints its dial failures to stderr; the outage tests make
	// many on purpose.
	quiet := logrus.New()
	quiet.Out = nopWriter{}
	redisstore.RouteClientLogs(logrus.NewEntry(quiet))
	os.Exit(m.Run())
}
