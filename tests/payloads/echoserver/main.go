// Command echoserver is a TCP and UDP echo server for the port forwarding tests.
//
//	echoserver -tcp :80 -tcp :81 -udp :7
//
// TCP: every byte read is written back; when the client half-closes, the
// server finishes writing and closes its side. UDP: every datagram is sent
// back to its sender. It prints "listening tcp ADDR" / "listening udp ADDR"
// for each socket once all of them are bound, then serves until killed.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var tcps, udps list
	flag.Var(&tcps, "tcp", "TCP address to listen on (repeatable)")
	flag.Var(&udps, "udp", "UDP address to listen on (repeatable)")
	flag.Parse()
	var lines []string
	for _, a := range tcps {
		l, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "echoserver:", err)
			os.Exit(1)
		}
		lines = append(lines, "listening tcp "+l.Addr().String())
		go serveTCP(l)
	}
	for _, a := range udps {
		c, err := net.ListenPacket("udp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "echoserver:", err)
			os.Exit(1)
		}
		lines = append(lines, "listening udp "+c.LocalAddr().String())
		go serveUDP(c)
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	select {}
}

func serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echoserver: accept:", err)
			continue
		}
		go echo(c)
	}
}

// echo copies with a plain buffer: io.Copy between TCP connections would
// splice through pipes that Go keeps in a pool until the next GC.
func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveUDP(c net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "echoserver: read:", err)
			return
		}
		c.WriteTo(buf[:n], addr)
	}
}
