package portfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The parent and the child talk over one SOCK_SEQPACKET socketpair. SEQPACKET
// keeps message boundaries, so each request and each reply is exactly one
// recvmsg, and an SCM_RIGHTS descriptor travels with the reply it belongs to;
// a SOCK_STREAM socket would need framing and could split a reply from its
// descriptor. Requests carry an id, so any number of dials are in flight at
// once and replies may come back in any order.
//
// request (parent -> child), 28 bytes:
//
//	[0]     version (wireVersion)
//	[1]     protocol: 't' tcp or 'u' udp
//	[2:4]   port, big endian
//	[4:8]   id, big endian
//	[8:24]  IPv6 or IPv4-mapped address
//	[24:28] dial timeout in milliseconds, big endian
//
// reply (child -> parent), 8 bytes and an optional error text:
//
//	[0]     version
//	[1]     0 ok, the connected socket attached with SCM_RIGHTS; 1 failed
//	[2:4]   errno of a failed dial, 0 if unknown
//	[4:8]   id of the request
//	[8:]    error text of a failed dial
const (
	wireVersion  = 1
	requestSize  = 28
	replyHdrSize = 8
	maxReplySize = 512
	replyOK      = 0
	replyFailed  = 1
)

type request struct {
	proto   byte // 't' or 'u'
	port    uint16
	id      uint32
	addr    netip.Addr
	timeout time.Duration // millisecond resolution
}

func (r request) marshal(b []byte) []byte {
	b = b[:requestSize]
	b[0] = wireVersion
	b[1] = r.proto
	binary.BigEndian.PutUint16(b[2:4], r.port)
	binary.BigEndian.PutUint32(b[4:8], r.id)
	a16 := r.addr.As16()
	copy(b[8:24], a16[:])
	binary.BigEndian.PutUint32(b[24:28], uint32(r.timeout/time.Millisecond))
	return b
}

func unmarshalRequest(b []byte) (request, error) {
	if len(b) != requestSize || b[0] != wireVersion {
		return request{}, fmt.Errorf("malformed dial request of %d bytes", len(b))
	}
	r := request{
		proto:   b[1],
		port:    binary.BigEndian.Uint16(b[2:4]),
		id:      binary.BigEndian.Uint32(b[4:8]),
		addr:    netip.AddrFrom16([16]byte(b[8:24])).Unmap(),
		timeout: time.Duration(binary.BigEndian.Uint32(b[24:28])) * time.Millisecond,
	}
	if r.proto != 't' && r.proto != 'u' {
		return request{}, fmt.Errorf("dial request with unknown protocol %q", r.proto)
	}
	return r, nil
}

type reply struct {
	id    uint32
	errno unix.Errno
	msg   string // empty on success
}

func (r reply) marshal() []byte {
	b := make([]byte, replyHdrSize, replyHdrSize+len(r.msg))
	b[0] = wireVersion
	if r.msg != "" {
		b[1] = replyFailed
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(r.errno))
	binary.BigEndian.PutUint32(b[4:8], r.id)
	msg := r.msg
	if len(msg) > maxReplySize-replyHdrSize {
		msg = msg[:maxReplySize-replyHdrSize]
	}
	return append(b, msg...)
}

func unmarshalReply(b []byte) (reply, error) {
	if len(b) < replyHdrSize || b[0] != wireVersion {
		return reply{}, fmt.Errorf("malformed dial reply of %d bytes", len(b))
	}
	r := reply{
		id:    binary.BigEndian.Uint32(b[4:8]),
		errno: unix.Errno(binary.BigEndian.Uint16(b[2:4])),
	}
	if b[1] != replyOK {
		r.msg = string(b[replyHdrSize:])
		if r.msg == "" {
			r.msg = "dial failed"
		}
	}
	return r, nil
}

// NewSocketpair returns the two ends of the socketpair that Serve (parent)
// and ServeChild (child) talk over: a close-on-exec SOCK_SEQPACKET pair. The
// caller passes child to the sandbox (e.g. in ExtraFiles, which clears
// close-on-exec for the new process) and closes its own copy afterwards.
func NewSocketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create portfwd socketpair: %w", os.NewSyscallError("socketpair", err))
	}
	return os.NewFile(uintptr(fds[0]), "portfwd-parent"), os.NewFile(uintptr(fds[1]), "portfwd-child"), nil
}

// errnoOf returns the errno inside err, or 0.
func errnoOf(err error) unix.Errno {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}
