package netaccel

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() { scenarios["connects"] = scenarioConnects }

// scenarioConnects times t.Count blocking connects to the host's server
// at 10.0.2.2 (switched), then as many to a listener of the child's own
// loopback (the policy keeps it: the supervisor answers CONTINUE, the
// floor of a trapped connect).
func scenarioConnects(t childTask, r results) {
	r.set("switched", connectTimes(t.Count, sockaddr(alias(t.HostPort))))
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	}
	if err == nil {
		err = unix.Listen(ln, 4096)
	}
	if err != nil {
		r.set("continued", err)
		return
	}
	go func() {
		for {
			c, _, err := unix.Accept(ln)
			if err != nil {
				return
			}
			unix.Close(c)
		}
	}()
	sa, _ := unix.Getsockname(ln)
	r.set("continued", connectTimes(t.Count, sa))
}

// connectTimes makes n blocking connects to sa, each closed at once, and
// returns the median and the 90th percentile of socket-to-connected, in
// microseconds ("12.3 45.6").
func connectTimes(n int, sa unix.Sockaddr) string {
	var ds []float64
	for i := 0; i < n; i++ {
		start := time.Now()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return errnoName(err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return errnoName(err)
		}
		ds = append(ds, float64(time.Since(start).Nanoseconds())/1e3)
		unix.Close(fd)
	}
	slices.Sort(ds)
	return strconv.FormatFloat(ds[len(ds)/2], 'f', 1, 64) + " " + strconv.FormatFloat(ds[len(ds)*9/10], 'f', 1, 64)
}

// BenchmarkConnect measures the latency a switch adds to a connect (issue
// 16's bar: a median at most 30 us over direct): 2000 switched blocking
// connects to a server on the host's loopback, 2000 made directly on the
// host to the same server, and 2000 the supervisor answers CONTINUE (the
// cost of the trap alone), in one run; b.N is not used. Reported as
// medians and 90th percentiles in microseconds:
//
//	go test -run '^$' -bench Connect -benchtime 1x ./netaccel/
func BenchmarkConnect(b *testing.B) {
	if err := probePin(); err != nil {
		b.Skipf("no switch on this host: %v", err)
	}
	srv := newHostServers(b)
	const n = 2000
	cfg := defaultConfig()
	cfg.Trace = func(string) {} // as without --debug
	res, st := runChildTask(b, childTask{Scenario: "connects", Count: n}, srv, cfg)
	direct := connectTimes(n, &unix.SockaddrInet4{Port: srv.host.port(), Addr: [4]byte{127, 0, 0, 1}})
	if st.Switched != n {
		b.Fatalf("%d of %d connects switched (%v)", st.Switched, n, res)
	}
	report := func(name, v string) {
		var med, p90 float64
		if _, err := fmt.Sscan(v, &med, &p90); err != nil {
			b.Fatalf("%s: %q", name, v)
		}
		b.ReportMetric(med, name+"-median-us")
		b.ReportMetric(p90, name+"-p90-us")
	}
	report("direct", direct)
	report("switched", res["switched"])
	report("continued", res["continued"])
}
