package portfwd

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []request{
		{proto: 't', port: 80, id: 1, addr: netip.MustParseAddr("10.0.2.100"), timeout: 3 * time.Second},
		{proto: 'u', port: 65535, id: 1<<32 - 1, addr: netip.MustParseAddr("fd00::100"), timeout: time.Millisecond},
	} {
		var b [requestSize]byte
		got, err := unmarshalRequest(r.marshal(b[:]))
		if err != nil || got != r {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, requestSize-1), make([]byte, requestSize)} {
		if _, err := unmarshalRequest(bad); err == nil {
			t.Errorf("unmarshalRequest(%x) succeeded", bad)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range []reply{
		{id: 7},
		{id: 8, errno: unix.ECONNREFUSED, msg: "connection refused"},
	} {
		got, err := unmarshalReply(r.marshal())
		if err != nil || got != r {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
	}
	long := reply{id: 9, msg: string(make([]byte, 2*maxReplySize))}
	if b := long.marshal(); len(b) > maxReplySize {
		t.Errorf("reply of %d bytes, limit %d", len(b), maxReplySize)
	}
	if _, err := unmarshalReply([]byte{wireVersion}); err == nil {
		t.Error("short reply accepted")
	}
}
