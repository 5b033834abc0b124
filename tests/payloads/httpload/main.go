// Command httpload is a Go HTTP client under load, for the network
// acceleration tests (tests/netaccel_compat_test.go).
//
//	httpload -n 200 -c 16 -spin 4 -timeout 20s http://10.0.2.2:PORT/
//
// It makes n GETs, c at a time, each on a new connection (no keep-alive),
// while spin goroutines burn CPU so that the runtime preempts goroutines
// with SIGURG throughout. Each response's body is the address the server
// saw the client at. It prints:
//
//	ok: N              GETs answered 200
//	failed: N          the others; then "error: TEXT" once for each distinct error
//	switched: N        connections whose local address is 127.0.0.1:PORT and equal
//	                   to the one the server saw (a host socket)
//	slirp: N           connections whose local address is 10.0.2.100 (slirp4netns)
//	other: N           any other local address; then "other-addr: LOCAL SEEN" for the first few
//	sigurg: N          SIGURGs the process received meanwhile
//
// and exits 0 when every GET succeeded, 1 otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 200, "GETs")
	c := flag.Int("c", 16, "GETs at a time")
	spin := flag.Int("spin", 4, "goroutines burning CPU")
	timeout := flag.Duration("timeout", 20*time.Second, "for all of it")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: httpload [-n N] [-c C] [-spin S] [-timeout D] URL")
		os.Exit(2)
	}
	url := flag.Arg(0)

	urg := make(chan os.Signal, 1024)
	signal.Notify(urg, syscall.SIGURG)
	var urgs atomic.Int64
	go func() {
		for range urg {
			urgs.Add(1)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stop := make(chan struct{})
	var spinners sync.WaitGroup
	for i := 0; i < *spin; i++ {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			x := uint64(i)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for j := 0; j < 1<<20; j++ { // no call: preempted only asynchronously
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
		}()
	}

	var mu sync.Mutex
	var ok, failed, switched, slirp, other int
	errs := map[string]bool{}
	var others []string
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < *c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				// A transport per GET, to know its connection's local address.
				var laddr string
				d := &net.Dialer{}
				tr := tr.Clone()
				tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
					conn, err := d.DialContext(ctx, network, addr)
					if err == nil {
						laddr = conn.LocalAddr().String()
					}
					return conn, err
				}
				seen, err := get(ctx, &http.Client{Transport: tr}, url)
				tr.CloseIdleConnections()
				mu.Lock()
				switch {
				case err != nil:
					failed++
					errs[err.Error()] = true
				default:
					ok++
					switch {
					case strings.HasPrefix(laddr, "127.0.0.1:") && laddr == seen:
						switched++
					case strings.HasPrefix(laddr, "10.0.2.100:"):
						slirp++
					default:
						other++
						if len(others) < 5 {
							others = append(others, laddr+" "+seen)
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < *n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(stop)
	spinners.Wait()
	signal.Stop(urg)

	fmt.Println("ok:", ok)
	fmt.Println("failed:", failed)
	var es []string
	for e := range errs {
		es = append(es, e)
	}
	sort.Strings(es)
	for _, e := range es {
		fmt.Println("error:", e)
	}
	fmt.Println("switched:", switched)
	fmt.Println("slirp:", slirp)
	fmt.Println("other:", other)
	for _, o := range others {
		fmt.Println("other-addr:", o)
	}
	fmt.Println("sigurg:", urgs.Load())
	if failed > 0 {
		os.Exit(1)
	}
}

// get GETs url and returns the body, trimmed.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}
