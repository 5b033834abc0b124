package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

const reply = "Hello from rabbitc container"

func main() {
	addr := flag.String("addr", "0.0.0.0:80", "listen address, or auto for the first non-loopback IPv4 address on port 80")
	waitFD := flag.Int("wait-fd", -1, "read one byte from this descriptor before listening")
	network := flag.String("net", "tcp", "tcp, or tcp4 for an IPv4 socket (with tcp, Go listens on a wildcard address with a dual-stack IPv6 socket)")
	noMPTCP := flag.Bool("no-mptcp", false, "listen with a plain TCP socket (Go listens with an MPTCP one by default since 1.24; plain TCP clients fall back to TCP)")
	flag.Parse()
	if err := run(*network, *addr, *waitFD, !*noMPTCP); err != nil {
		fmt.Fprintln(os.Stderr, "benchhttpd:", err)
		os.Exit(1)
	}
}

func run(network, addr string, waitFD int, mptcp bool) error {
	if waitFD >= 0 {
		f := os.NewFile(uintptr(waitFD), "wait-fd")
		b := make([]byte, 1)
		if _, err := f.Read(b); err != nil {
			return fmt.Errorf("read wait-fd %d: %w", waitFD, err)
		}
		f.Close()
	}
	if addr == "auto" {
		addr = autoAddr()
	}
	var lc net.ListenConfig
	if !mptcp {
		lc.SetMultipathTCP(false)
	}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, reply)
	})
	mux.HandleFunc("/peer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, r.RemoteAddr)
	})
	return http.Serve(ln, mux)
}

// autoAddr picks the address the seed's server picks: the last non-loopback
// IPv4 address of the interfaces, port 80, or 127.0.0.1:80 when there is none.
func autoAddr() string {
	ip := "127.0.0.1"
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ip + ":80"
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ip = n.IP.String()
		}
	}
	return net.JoinHostPort(ip, "80")
}
