// Package dnstest is a small authoritative DNS server for tests, on
// loopback (UDP and TCP on one port): every name resolves to 127.0.0.1,
// the zone has an SOA, and TXT records are added and removed by RFC 2136
// dynamic updates that must be signed with the zone's TSIG key — what a
// self-hosted BIND or Knot does for ten's rfc2136 DNS provider. Pebble asks
// it for DNS-01 challenge records.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running test DNS server.
type Server struct {
	// Addr is HOST:PORT of both its UDP and TCP listeners.
	Addr string
	// Zone is the zone it is authoritative for, as a FQDN ("example.test.").
	Zone    string
	keyName string

	mu sync.Mutex // mu guards the following
	// txt holds the TXT values by lower-case FQDN.
	txt     map[string][]string
	updates int // updates applied
	refused int // updates refused (unsigned, bad signature, other zone)
}

// Start serves zone until the test ends. Updates must be signed with the
// TSIG key keyName (hmac-sha256) and the base64 secret.
func Start(t testing.TB, zone, keyName, secret string) *Server {
	t.Helper()
	s := &Server{Zone: dns.Fqdn(strings.ToLower(zone)), keyName: dns.Fqdn(keyName), txt: map[string][]string{}}
	tsig := map[string]string{s.keyName: secret}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for try := 0; ; try++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h, TsigSecret: tsig, MsgAcceptFunc: accept}
	tcp := &dns.Server{Listener: ln, Handler: h, TsigSecret: tsig, MsgAcceptFunc: accept}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// accept lets dynamic updates through (miekg/dns's default answers them
// NOTIMP) and leaves everything else to the default.
func accept(dh dns.Header) dns.MsgAcceptAction {
	if opcode := int(dh.Bits>>11) & 0xF; opcode == dns.OpcodeUpdate {
		if dh.Qdcount != 1 {
			return dns.MsgReject
		}
		return dns.MsgAccept
	}
	return dns.DefaultMsgAcceptFunc(dh)
}

// Updates returns how many signed updates were applied and how many were
// refused.
func (s *Server) Updates() (applied, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates, s.refused
}

// TXT returns the TXT values of name now.
func (s *Server) TXT(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.txt[dns.Fqdn(strings.ToLower(name))]...)
}

func (s *Server) inZone(name string) bool {
	name = strings.ToLower(dns.Fqdn(name))
	return name == s.Zone || strings.HasSuffix(name, "."+s.Zone)
}

func (s *Server) soa() *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: s.Zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns." + s.Zone, Mbox: "hostmaster." + s.Zone, Serial: uint32(time.Now().Unix()), Refresh: 60, Retry: 60, Expire: 600, Minttl: 1}
}

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if r.Opcode == dns.OpcodeUpdate {
		m.Rcode = s.update(w, r)
		if r.IsTsig() != nil && w.TsigStatus() == nil {
			m.SetTsig(s.keyName, dns.HmacSHA256, 300, time.Now().Unix())
		}
		w.WriteMsg(m)
		return
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 1}
	switch {
	case q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
	case !s.inZone(name):
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeSOA && name == s.Zone:
		m.Answer = append(m.Answer, s.soa())
	case q.Qtype == dns.TypeTXT:
		s.mu.Lock()
		for _, v := range s.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
		}
		s.mu.Unlock()
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, s.soa())
		}
	default:
		m.Ns = append(m.Ns, s.soa())
	}
	w.WriteMsg(m)
}

// update applies an RFC 2136 update of TXT records (RFC 2136 §3.4.2:
// class IN adds, NONE deletes one value, ANY deletes the set).
func (s *Server) update(w dns.ResponseWriter, r *dns.Msg) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.IsTsig() == nil || w.TsigStatus() != nil {
		s.refused++
		return dns.RcodeNotAuth
	}
	if len(r.Question) != 1 || strings.ToLower(r.Question[0].Name) != s.Zone {
		s.refused++
		return dns.RcodeNotZone
	}
	for _, rr := range r.Ns {
		h := rr.Header()
		name := strings.ToLower(h.Name)
		if !s.inZone(name) {
			s.refused++
			return dns.RcodeNotZone
		}
		if h.Rrtype != dns.TypeTXT && !(h.Class == dns.ClassANY && h.Rrtype == dns.TypeANY) {
			continue
		}
		switch h.Class {
		case dns.ClassINET:
			if txt, ok := rr.(*dns.TXT); ok {
				s.txt[name] = append(s.txt[name], strings.Join(txt.Txt, ""))
			}
		case dns.ClassNONE:
			if txt, ok := rr.(*dns.TXT); ok {
				v := strings.Join(txt.Txt, "")
				vals := s.txt[name][:0]
				for _, x := range s.txt[name] {
					if x != v {
						vals = append(vals, x)
					}
				}
				s.txt[name] = vals
			}
		case dns.ClassANY:
			delete(s.txt, name)
		}
	}
	s.updates++
	return dns.RcodeSuccess
}
