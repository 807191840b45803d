// Package forwarded finds the client of a request that came through
// trusted proxies (settings.trusted_proxies): the right-most address in
// X-Forwarded-For that no trusted proxy owns. Every proxy appends the
// address it was reached from, so entries to the right of the first
// untrusted one were written by trusted proxies; everything left of it
// is what an untrusted client claimed and is never believed.
package forwarded

import (
	"net/netip"
	"strings"
)

// MaxHops bounds how many X-Forwarded-For entries Client reads from the
// right; a longer chain of trusted proxies ends at the last one read.
const MaxHops = 16

// Client returns the address of the client of a request from remoteAddr
// (HOST:PORT or HOST) with the X-Forwarded-For header values xff. When
// trusted is nil or does not trust remoteAddr, that is remoteAddr's host.
// Otherwise it is the right-most entry of xff that trusted does not
// trust; an entry that is not an IP address ends the walk at the address
// that wrote it (a trusted proxy never writes one), as does MaxHops.
func Client(remoteAddr string, xff []string, trusted func(ip string) bool) string {
	client := Host(remoteAddr)
	if trusted == nil || !trusted(client) {
		return client
	}
	hops := 0
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			var e string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				e, v = v[j+1:], v[:j]
			} else {
				e, v = v, ""
			}
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			a, err := netip.ParseAddr(e)
			if err != nil {
				return client
			}
			client = a.Unmap().WithZone("").String()
			if !trusted(client) {
				return client
			}
			if hops++; hops >= MaxHops {
				return client
			}
		}
	}
	return client
}

// Host is the address part of HOST:PORT, [V6]:PORT or a bare address, as
// Client reads a peer: an IPv4-mapped address as the IPv4 one, without a
// zone.
func Host(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
	}
	if a, err := netip.ParseAddr(addr); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return addr
}
