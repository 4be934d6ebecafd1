//go:build !linux

package upstream

// Without splice(2) every tunnel copies (tcpTunnel.pipe).
const (
	spliceSupported = false
	splicePipeSize  = 0
)

// splice is never called: spliceSides reports false here.
func (t *tcpTunnel) splice(dst, src spliceSide, srcErr, dstErr TCPEnd) int64 {
	panic("upstream: splice on a platform without it")
}
