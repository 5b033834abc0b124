// The seed's HTTP server, verbatim from the blog post that rabbitc comes from
// (only gofmt'ed): it listens on the first non-loopback IPv4 address on port 80.
package main

import (
	"fmt"
	"net"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello from rabbitc container")
	})
	var addr string
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		addr = "127.0.0.1"
	}
	for _, address := range addrs {
		if ipnet, ok := address.(*net.IPNet); ok && !ipnet.IP.IsLoopback() {
			if ipnet.IP.To4() != nil {
				addr = ipnet.IP.String()
			}
		}
	}
	endpoint := fmt.Sprintf("%s:80", addr)
	fmt.Println("running HTTP server on", endpoint)
	err = http.ListenAndServe(endpoint, nil)
	if err != nil {
		panic(err)
	}
}
