package admin

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/statusbridge/statusbridge/config"
)

// Proxies are the reverse proxies whose forwarding headers are believed
// (server.trusted_proxies). The zero value trusts none.
type Proxies []netip.Prefix

// ProxiesOf are the proxies of server.trusted_proxies.
func ProxiesOf(cidrs []config.CIDR) Proxies {
	out := make(Proxies, 0, len(cidrs))
	for _, c := range cidrs {
		out = append(out, c.Prefix)
	}
	return out
}

func (p Proxies) trusts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, pre := range p {
		if pre.Contains(addr) {
			return true
		}
	}
	return false
}

func remoteAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}

// ClientIP is the address a request comes from: the connection's, or, when
// the connection comes from a trusted proxy, the last address of
// X-Forwarded-For that is not itself a trusted proxy (the ones before it
// were written by whoever sent the request and prove nothing).
func (p Proxies) ClientIP(r *http.Request) string {
	conn, ok := remoteAddr(r)
	if !ok {
		return r.RemoteAddr
	}
	if !p.trusts(conn) {
		return conn.String()
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	client := conn
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a garbled hop: trust nothing before it
		}
		client = a.Unmap()
		if !p.trusts(client) {
			break
		}
	}
	return client.String()
}

// HTTPS reports whether the client's request came over TLS: to this server,
// or to a trusted proxy that says so with X-Forwarded-Proto: https.
func (p Proxies) HTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	conn, ok := remoteAddr(r)
	return ok && p.trusts(conn) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

// Guard checks the admin token, for the admin API's Bearer check and the
// console's login alike, and slows down an address that keeps getting it
// wrong: after Limit wrong tokens within Window, that address is refused
// without a comparison until the oldest of them is older than Window. A
// missing token is not a wrong one.
type Guard struct {
	// Limit and Window: 5 wrong tokens a minute unless set before use.
	Limit  int
	Window time.Duration

	token []byte
	now   func() time.Time

	mu    sync.Mutex
	fails map[string][]time.Time // address → times of its recent wrong tokens
}

// NewGuard guards token: 5 wrong tokens a minute per address.
func NewGuard(token string) *Guard {
	return &Guard{Limit: 5, Window: time.Minute, token: []byte(token), now: time.Now, fails: map[string][]time.Time{}}
}

// maxTracked bounds the addresses remembered; past it, stale ones are dropped.
const maxTracked = 10000

// Check compares got with the token in constant time. When addr is being
// slowed down it compares nothing and returns how long to wait.
func (g *Guard) Check(addr, got string) (ok bool, wait time.Duration) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	recent := g.recent(addr, now)
	if len(recent) >= g.Limit {
		return false, recent[len(recent)-g.Limit].Add(g.Window).Sub(now)
	}
	if len(g.token) > 0 && subtle.ConstantTimeCompare([]byte(got), g.token) == 1 {
		return true, 0
	}
	if got == "" {
		return false, 0
	}
	if len(g.fails) >= maxTracked {
		for a := range g.fails {
			if len(g.recent(a, now)) == 0 {
				delete(g.fails, a)
			}
		}
	}
	g.fails[addr] = append(recent, now)
	return false, 0
}

// recent returns addr's wrong tokens within the window (dropping older ones).
func (g *Guard) recent(addr string, now time.Time) []time.Time {
	times := g.fails[addr]
	i := 0
	for i < len(times) && now.Sub(times[i]) >= g.Window {
		i++
	}
	if i == len(times) {
		delete(g.fails, addr)
		return nil
	}
	times = times[i:]
	g.fails[addr] = times
	return times
}
