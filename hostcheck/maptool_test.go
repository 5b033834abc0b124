package hostcheck

import (
	"encoding/binary"
	"testing"
)

// capData builds a struct vfs_cap_data of the given revision, with the
// effective flag and the permitted set.
func capData(rev uint32, eff bool, permitted uint64) []byte {
	words := 2
	size := 4 + 8*words
	switch rev {
	case 0x01000000:
		words, size = 1, 12
	case 0x03000000:
		size += 4 // rootid
	}
	b := make([]byte, size)
	magic := rev
	if eff {
		magic |= 1
	}
	binary.LittleEndian.PutUint32(b, magic)
	for i := 0; i < words; i++ {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(permitted>>(32*i)))
	}
	return b
}

func TestParseFileCaps(t *testing.T) {
	const setuid, setgid = 1 << 7, 1 << 6
	for _, tc := range []struct {
		name      string
		b         []byte
		permitted uint64
		eff, err  bool
	}{
		{"v2 cap_setuid=ep", capData(0x02000000, true, setuid), setuid, true, false},
		{"v2 cap_setgid=p", capData(0x02000000, false, setgid), setgid, false, false},
		{"v3 with a high cap", capData(0x03000000, true, setuid|1<<40), setuid | 1<<40, true, false},
		{"v1", capData(0x01000000, true, setuid), setuid, true, false},
		{"short v2", capData(0x02000000, true, setuid)[:12], 0, false, true},
		{"unknown revision", capData(0x04000000, true, setuid), 0, false, true},
		{"empty", nil, 0, false, true},
	} {
		p, eff, err := parseFileCaps(tc.b)
		if (err != nil) != tc.err || p != tc.permitted || eff != tc.eff {
			t.Errorf("%s: parseFileCaps = %#x, %v, %v; want %#x, %v, error %v", tc.name, p, eff, err, tc.permitted, tc.eff, tc.err)
		}
	}
}
