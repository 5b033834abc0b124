// Command sink checks bulk transfers through a published port.
//
//	sink -listen :80
//
// For each connection it reads until the client half-closes, then writes one
// line "<bytes> <sha256 hex>\n" describing what it received, followed by as
// many bytes of math/rand/v2's ChaCha8 with the seed [32]byte{2} as it
// received, and closes. The client can thus check both directions and both
// half-closes.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
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
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{2}), n); err != nil {
		fmt.Fprintln(os.Stderr, "sink: write:", err)
		return
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "sink: write:", err)
	}
}
