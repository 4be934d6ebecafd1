package certs

import "sync"

// readiness lets handshakes wait for a name's certificate: certmagic's
// events close the name's channel when the certificate is cached or its
// order failed.
type readiness struct {
	mu       sync.Mutex
	waiters  map[string]chan struct{}
	errs     map[string]error
	ordering map[string]bool
}

func newReadiness() *readiness {
	return &readiness{waiters: map[string]chan struct{}{}, errs: map[string]error{}, ordering: map[string]bool{}}
}

// started records that an order for name is under way.
func (r *readiness) started(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ordering[normalizeName(name)] = true
}

// failedIdle returns the last order's error when it failed and no new
// order is under way: a handshake then has nothing to wait for.
func (r *readiness) failedIdle(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ordering[name] {
		return nil
	}
	return r.errs[name]
}

// wait returns a channel closed at the name's next event.
func (r *readiness) wait(name string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.waiters[name]
	if !ok {
		ch = make(chan struct{})
		r.waiters[name] = ch
	}
	return ch
}

func (r *readiness) cached(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		n = normalizeName(n)
		delete(r.errs, n)
		delete(r.ordering, n)
		r.wake(n)
	}
}

func (r *readiness) failed(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name = normalizeName(name)
	r.errs[name] = err
	delete(r.ordering, name)
	r.wake(name)
}

func (r *readiness) lastError(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[name]
}

func (r *readiness) wake(name string) {
	if ch, ok := r.waiters[name]; ok {
		close(ch)
		delete(r.waiters, name)
	}
}
