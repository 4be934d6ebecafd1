package session

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrCookieName is wrapped by ValidCookieName's errors.
var ErrCookieName = errors.New("session: invalid cookie name")

// ValidCookieName checks that name is an RFC 6265 cookie-name, that is an
// RFC 2616 token: one or more US-ASCII characters other than controls,
// space and the separators ()<>@,;:\"/[]?={}. The error names the first
// bad byte. The "__Host-" and "__Secure-" prefixes are fine: every cookie
// this package writes is Secure with Path=/ and no Domain, as they demand.
func ValidCookieName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrCookieName)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return fmt.Errorf("%w %q: byte %d (%q) is not allowed in an RFC 6265 token", ErrCookieName, name, i, name[i])
		}
	}
	return nil
}

func isTokenByte(b byte) bool {
	if b <= ' ' || b >= 0x7f { // CTLs, space, DEL and non-ASCII
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?={}`, rune(b))
}

// cookieAttrs follow every sticky cookie. Secure: the gateway terminates TLS
// and the cookie is a routing secret of sorts. HttpOnly: scripts have no use
// for it. SameSite=Lax: a cross-site top-level navigation should still land
// on the session's backend, which Strict would prevent. Path=/: one session
// per host, and required by the __Host- prefix. No Domain, for the same.
const cookieAttrs = "; Path=/; Secure; HttpOnly; SameSite=Lax"

// FormatSetCookie returns a Set-Cookie header value for name=value with the
// sticky attributes, and "Max-Age" when maxAge > 0 (rounded up to whole
// seconds, so a sub-second maxAge does not become Max-Age=0, which deletes
// the cookie). maxAge <= 0 makes a session cookie.
//
// The caller guarantees that name passed ValidCookieName and value holds
// only cookie-octets (Codec values are base64url). It costs one allocation,
// unlike http.Cookie.String, which validates and formats on every call.
func FormatSetCookie(name, value string, maxAge time.Duration) string {
	var secs int64
	if maxAge > 0 {
		secs = int64((maxAge + time.Second - 1) / time.Second)
	}
	return formatSetCookie(name+"=", value, secs)
}

// formatSetCookie joins prefix ("name="), value and the attributes, with
// Max-Age=secs when secs > 0, in a single allocation.
func formatSetCookie(prefix, value string, secs int64) string {
	var num [20]byte
	n := len(prefix) + len(value) + len(cookieAttrs)
	var digits []byte
	if secs > 0 {
		digits = strconv.AppendInt(num[:0], secs, 10)
		n += len("; Max-Age=") + len(digits)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(prefix)
	b.WriteString(value)
	if secs > 0 {
		b.WriteString("; Max-Age=")
		b.Write(digits)
	}
	b.WriteString(cookieAttrs)
	return b.String()
}
