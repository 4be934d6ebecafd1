package upstream

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"
)

// Balancer names, as written in the configuration. The zero value of the
// configured name ("") means roundrobin.
const (
	balancerRoundRobin = "roundrobin"
	balancerLeastReq   = "leastreq"
	balancerP2C        = "p2c"
	balancerRandom     = "random"
	balancerHash       = "hash"
)

// balancerNames is the order of BalancerNames and of the error that lists them.
var balancerNames = [...]string{balancerRoundRobin, balancerLeastReq, balancerP2C, balancerRandom, balancerHash}

// BalancerNames returns the names NewBalancer accepts, for help texts. The
// slice is a fresh copy.
func BalancerNames() []string { return append([]string(nil), balancerNames[:]...) }

// ErrUnknownBalancer is wrapped by NewBalancer's error for a name it does not
// know; the message lists the valid ones.
var ErrUnknownBalancer = errors.New("upstream: unknown balancer")

// DefaultHashLoadFactor is the bound of consistent hashing with bounded
// loads: a backend takes no new key's request while it has 1.25 times its
// weighted share of the requests in flight, so a key stays on its backend
// unless that backend is 25% busier than its share. It is the common choice
// (brpc's default; "hash-balance-factor 125" in HAProxy, whose own default
// is off): a lower bound moves keys at every burst, a higher one lets a hot
// key overload its backend before relief.
const DefaultHashLoadFactor = 1.25

// KeyBalancer is a Balancer that can also pick by a key, so that requests
// with the same key (a client address, a header or cookie value hashed with
// HashKey) go to the same backend. Callers find it by type assertion.
type KeyBalancer interface {
	Balancer
	// PickKey returns the backend for key among those skip does not
	// reject, or nil. skip may be nil.
	PickKey(key uint64, skip func(*Backend) bool) *Backend
}

var (
	_ Balancer    = (*LeastRequests)(nil)
	_ Balancer    = (*P2CEWMA)(nil)
	_ Balancer    = (*Random)(nil)
	_ KeyBalancer = (*ConsistentHash)(nil)
)

// BalancerOptions tunes NewBalancer. The zero value means the defaults; each
// field says which balancers read it. NewBalancer copies what it needs.
type BalancerOptions struct {
	// HashLoadFactor is the load bound of "hash": a backend with more than
	// HashLoadFactor times its weighted share of the requests in flight
	// passes its keys on to the next backend on the ring. Zero means
	// DefaultHashLoadFactor; otherwise at least 1 (below 1 the shares of
	// all backends add up to less than the load).
	HashLoadFactor float64

	// HashUnbounded turns the load bound of "hash" off: a key goes to its
	// backend however busy that is (plain consistent hashing).
	HashUnbounded bool

	// SlowStart ramps up the share of a backend that has just come up
	// (first configured, back from an active check or a passive backoff)
	// linearly from nothing to its full weight over this duration; see
	// WithSlowStart. Zero means off.
	SlowStart time.Duration

	// Now is the clock of slow start. Nil means time.Now.
	Now func() time.Time
}

func (o *BalancerOptions) hashLoadFactor() float64 {
	switch {
	case o.HashUnbounded:
		return 0
	case o.HashLoadFactor == 0:
		return DefaultHashLoadFactor
	}
	return o.HashLoadFactor
}

// NewBalancer returns the balancer called name over backends with the given
// weights (same length, each 1..MaxWeight), wrapped in slow start if
// opts.SlowStart is set:
//
//   - "roundrobin" (also ""): smooth weighted round robin, NewSWRR.
//   - "leastreq": fewest requests in flight per weight, NewLeastRequests.
//   - "p2c": the better of two random backends by latency and load,
//     NewP2CEWMA.
//   - "random": weighted random, NewRandom.
//   - "hash": consistent hashing with bounded loads, NewConsistentHash;
//     the result is a KeyBalancer.
func NewBalancer(name string, backends []*Backend, weights []int, opts BalancerOptions) (Balancer, error) {
	if opts.SlowStart < 0 {
		return nil, fmt.Errorf("upstream: slow start %v is negative", opts.SlowStart)
	}
	var (
		b   Balancer
		err error
	)
	switch name {
	case "", balancerRoundRobin:
		b, err = NewSWRR(backends, weights)
	case balancerLeastReq:
		b, err = NewLeastRequests(backends, weights)
	case balancerP2C:
		b, err = NewP2CEWMA(backends, weights)
	case balancerRandom:
		b, err = NewRandom(backends, weights)
	case balancerHash:
		b, err = NewConsistentHash(backends, weights, opts.hashLoadFactor())
	default:
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownBalancer, name, strings.Join(balancerNames[:], ", "))
	}
	if err != nil {
		return nil, err
	}
	return WithSlowStart(b, backends, opts.SlowStart, opts.Now), nil
}

// checkWeights validates the arguments every balancer constructor takes,
// with the messages of NewSWRR.
func checkWeights(kind string, backends []*Backend, weights []int) error {
	if len(backends) == 0 {
		return fmt.Errorf("upstream: %s: no backends", kind)
	}
	if len(weights) != len(backends) {
		return fmt.Errorf("upstream: %s: %d weights for %d backends", kind, len(weights), len(backends))
	}
	for i, w := range weights {
		if backends[i] == nil {
			return fmt.Errorf("upstream: %s: backend %d is nil", kind, i+1)
		}
		if w < 1 || w > MaxWeight {
			return fmt.Errorf("upstream: %s: backend %q: weight %d out of range 1..%d", kind, backends[i].ID(), w, MaxWeight)
		}
	}
	return nil
}

// bitset marks backends by index. A Pick that must remember which backends
// it has rejected keeps one in a [stackWords]uint64 array on its stack
// (pools of up to 256 backends, like SWRR) and allocates above that.
type bitset []uint64

const stackWords = 4

func (s bitset) has(i int) bool { return s[i>>6]&(1<<(uint(i)&63)) != 0 }
func (s bitset) set(i int)      { s[i>>6] |= 1 << (uint(i) & 63) }
func (s bitset) unset(i int)    { s[i>>6] &^= 1 << (uint(i) & 63) }

// words returns how many words a bitset of n backends needs.
func words(n int) int { return (n + 63) / 64 }

// nth returns the index of the k-th (from 0) set bit of s, or -1 if s has
// no more than k.
func (s bitset) nth(k int) int {
	for w, word := range s {
		if c := bits.OnesCount64(word); k >= c {
			k -= c
			continue
		}
		for ; k > 0; k-- {
			word &= word - 1 // drop the lowest set bit
		}
		return w*64 + bits.TrailingZeros64(word)
	}
	return -1
}

// validLoadFactor reports whether f is a usable bound of consistent
// hashing: 0 (unbounded) or a finite value of at least 1.
func validLoadFactor(f float64) bool {
	return f == 0 || (f >= 1 && !math.IsInf(f, 1))
}
