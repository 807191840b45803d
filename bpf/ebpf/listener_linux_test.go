package ebpf

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

func TestParseSocketTable(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the fixture is from a little-endian machine")
	}
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
`
	got, err := parseSocketTable(strings.NewReader(table), netip.MustParseAddrPort("127.0.0.1:8000"), "0A")
	if err != nil || len(got) != 1 || got[0] != 4242 {
		t.Errorf("127.0.0.1:8000 listeners = %v, %v; want [4242]", got, err)
	}
	got, _ = parseSocketTable(strings.NewReader(table), netip.MustParseAddrPort("0.0.0.0:8000"), "0A")
	if len(got) != 1 || got[0] != 4444 {
		t.Errorf("0.0.0.0:8000 listeners = %v, want [4444]", got)
	}
	v6, err := parseProcAddr("00000000000000000000000001000000:1F40")
	if err != nil || v6 != netip.MustParseAddrPort("[::1]:8000") {
		t.Errorf("parseProcAddr(::1) = %v, %v", v6, err)
	}
}
