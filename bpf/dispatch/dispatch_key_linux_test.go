package dispatch

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestBindingKeys(t *testing.T) {
	for _, b := range []Binding{
		{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000, PortEnd: 7002},
		{Label: "api:prod", Protocol: "udp", Prefix: netip.MustParsePrefix("2001:db8::/32")},
		{Label: "x", Protocol: "tcp", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 1},
	} {
		keys, dest, addrBits := bindingKeys(b)
		if dest.label() != b.Label {
			t.Errorf("%v: destination label %q", b, dest.label())
		}
		if want := int(b.lastPort()-b.Port) + 1; len(keys) != want {
			t.Errorf("%v: %d keys, want %d", b, len(keys), want)
		}
		var back []Binding
		for _, k := range keys {
			if k.Prefixlen != 8+16+addrBits {
				t.Errorf("%v: key prefixlen %d, address bits %d", b, k.Prefixlen, addrBits)
			}
			back = append(back, k.binding(b.Label))
		}
		if got := mergeBindings(back); len(got) != 1 || got[0] != b {
			t.Errorf("%v: round trip gives %v", b, got)
		}
	}
	// The C side reads the port as __be16: its first byte is the high one.
	keys, _, _ := bindingKeys(Binding{Label: "a", Protocol: "tcp", Prefix: netip.MustParsePrefix("::/0"), Port: 0x1234})
	var raw [2]byte
	binary.NativeEndian.PutUint16(raw[:], keys[0].Port)
	if raw != [2]byte{0x12, 0x34} {
		t.Errorf("port bytes %x, want 1234", raw)
	}
	if size := binary.Size(keys[0]); size != 4+1+2+16 {
		t.Errorf("binding key marshals to %d bytes, want 23 (packed)", size)
	}
}
