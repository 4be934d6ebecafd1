package upstream

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// A new pipe has at least minSplicePipe and grows once, to what it asks.
func TestSplicePipeSize(t *testing.T) {
	p, err := newSplicePipe(splicePipeSize)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if p.size < minSplicePipe || p.grow != splicePipeSize {
		t.Fatalf("size %d, grow %d; want at least %d, then %d", p.size, p.grow, minSplicePipe, splicePipeSize)
	}
	// Past fs.pipe-max-size an unprivileged process cannot grow a pipe
	// (root can): the pipe then keeps its size, and only stops asking.
	want := splicePipeSize
	if b, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err == nil {
		if max, _ := strconv.Atoi(strings.TrimSpace(string(b))); max < splicePipeSize && os.Geteuid() != 0 {
			want = p.size
		}
	}
	p.resize()
	if p.size != want || p.grow != 0 {
		t.Errorf("after resize: size %d, grow %d; want %d, 0", p.size, p.grow, want)
	}
}
