// Command sink checks bulk transfers through a published port.
//
//	sink -listen :80
//
// For each connection it reads until the client half-closes, then writes one
// line "<bytes> <sha256 hex>\n" describing what it received, followed by as
// many bytes of the deterministic stream Stream(2) as it received, and closes.
// The client can thus check both directions and both half-closes.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	addr := flag.String("listen", ":80", "TCP address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
	fmt.Println("listening tcp", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "sink: accept:", err)
			continue
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink: read:", err)
		return
	}
	w := bufio.NewWriterSize(c, 1<<20)
	fmt.Fprintf(w, "%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	if _, err := io.CopyN(w, NewStream(2), n); err != nil {
		fmt.Fprintln(os.Stderr, "sink: write:", err)
		return
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "sink: write:", err)
	}
}

// Stream is an endless deterministic byte stream (xorshift64*), cheap to
// generate on both ends of a transfer. The tests keep an identical copy.
type Stream struct {
	x    uint64
	word [8]byte
	used int
}

// NewStream returns the stream for seed.
func NewStream(seed uint64) *Stream { return &Stream{x: seed*0x9E3779B97F4A7C15 | 1, used: 8} }

func (s *Stream) Read(p []byte) (int, error) {
	for i := range p {
		if s.used == 8 {
			s.x ^= s.x >> 12
			s.x ^= s.x << 25
			s.x ^= s.x >> 27
			v := s.x * 0x2545F4914F6CDD1D
			for j := range s.word {
				s.word[j] = byte(v >> (8 * j))
			}
			s.used = 0
		}
		p[i] = s.word[s.used]
		s.used++
	}
	return len(p), nil
}
