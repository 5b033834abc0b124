package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// env is what every measurement needs: paths, rounds, a log and ports.
type env struct {
	rabbitc      string // the rabbitc binary under test
	httpd        string // benchhttpd on the host, for the floor and the ceiling
	rootfs       string // the bench rootfs: busybox, httpd, iperf3 with its libraries
	podmanRootfs string // a copy of rootfs for podman, which writes into it
	work         string // scratch: bundles, runtime state, sockets, logs
	rounds       int    // alternating rounds per start-up measurement
	loadRounds   int    // alternating rounds per load measurement
	loadSecs     int    // seconds per iperf3 or wrk run
	quick        bool
	uid, gid     int
	nextPort     int
	logFile      *os.File
	traces       map[string]*traceTable
	started      time.Time
	floor2Once   sync.Once // floor 2's look-ups, outside its clock
	floor2       *floorMaps
	floor2Err    error
	requests     requestCounts // what clients asked the images phase's registry
	capOnce      sync.Once     // capLauncher's look-up
	capL         *launcher
}

func main() {
	if len(os.Args) > 3 && os.Args[1] == execAfterFDArg {
		os.Exit(execAfterFD(os.Args[2], os.Args[3:]))
	}
	if len(os.Args) > 1 && os.Args[1] == capLauncherArg {
		os.Exit(capLauncher(os.Args[2:]))
	}
	e := &env{uid: os.Getuid(), gid: os.Getgid(), traces: map[string]*traceTable{}, started: time.Now()}
	var out, only string
	flag.StringVar(&e.rabbitc, "rabbitc", "", "rabbitc binary")
	flag.StringVar(&e.httpd, "httpd", "", "benchhttpd binary")
	flag.StringVar(&e.rootfs, "rootfs", "", "bench rootfs")
	flag.StringVar(&e.podmanRootfs, "podman-rootfs", "", "copy of the bench rootfs for podman")
	flag.StringVar(&e.work, "work", "", "scratch directory")
	flag.StringVar(&out, "out", "", "directory for the table: <stem>.md, <stem>.csv, <stem>.png")
	flag.IntVar(&e.rounds, "rounds", 20, "alternating rounds per start-up measurement")
	flag.IntVar(&e.loadRounds, "load-rounds", 20, "alternating rounds per load measurement")
	flag.IntVar(&e.loadSecs, "load-seconds", 1, "seconds per iperf3 or wrk run")
	flag.IntVar(&e.nextPort, "port-base", 21000, "first host port to publish on 127.0.0.1")
	flag.BoolVar(&e.quick, "quick", false, "label the results as a quick run")
	flag.StringVar(&only, "only", "start,firstbyte,forward,exec,oci,images,outbound,connect", "comma-separated phases to run")
	flag.Parse()
	if e.rabbitc == "" || e.httpd == "" || e.rootfs == "" || e.work == "" || out == "" {
		fmt.Fprintln(os.Stderr, "rabbitbench: -rabbitc, -httpd, -rootfs, -work and -out are required (run bench/run.sh)")
		os.Exit(2)
	}
	if e.podmanRootfs == "" {
		e.podmanRootfs = e.rootfs
	}
	if os.Getuid() == 0 {
		fmt.Fprintln(os.Stderr, "rabbitbench: running as root measures nothing rootless (run bench/run.sh, which drops to RABBITC_BENCH_USER)")
		os.Exit(2)
	}
	for _, d := range []string{"state", "bundles"} {
		if err := os.MkdirAll(filepath.Join(e.work, d), 0o700); err != nil {
			fmt.Fprintln(os.Stderr, "rabbitbench:", err)
			os.Exit(1)
		}
	}
	lf, err := os.Create(filepath.Join(e.work, "bench.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitbench:", err)
		os.Exit(1)
	}
	e.logFile = lf
	if err := becomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "rabbitbench:", err)
		os.Exit(1)
	}
	res := newResults()
	phases := map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		phases[strings.TrimSpace(p)] = true
	}
	if phases["start"] {
		startNoNet(e, res)
	}
	if phases["firstbyte"] {
		startFirstByte(e, res)
	}
	if phases["forward"] {
		forwarding(e, res)
	}
	if phases["exec"] {
		execInto(e, res)
	}
	if phases["oci"] {
		ociCreateStart(e, res)
	}
	if phases["images"] {
		images(e, res)
	}
	if phases["outbound"] || phases["connect"] {
		outbound(e, res, phases["outbound"], phases["connect"])
	}
	// conmon and podman's cleanup may end just after their round.
	time.Sleep(200 * time.Millisecond)
	reapOrphans()
	stem := "latest"
	if e.quick {
		stem = "quick"
	}
	if err := report(e, res, out, stem); err != nil {
		fmt.Fprintln(os.Stderr, "rabbitbench: write report:", err)
		os.Exit(1)
	}
}

func (e *env) logf(format string, args ...any) {
	msg := fmt.Sprintf("[%6.1fs] ", time.Since(e.started).Seconds()) + fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, msg)
	fmt.Fprintln(e.logFile, msg)
}

// port returns a fresh free port on 127.0.0.1, so that no round waits for
// the previous one's listener to go away.
func (e *env) port() int {
	for {
		p := e.nextPort
		e.nextPort++
		if e.nextPort > 32000 {
			e.nextPort = 21000
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
}

// traceTable collects rabbitc's RABBITC_TRACE=1 lines over the rounds of a
// group: stage timestamps (µs since the parent's start) and, in lines named
// cpu:<process>, the CPU time (user+system, µs) each process spent.
type traceTable struct {
	stages []string
	us     map[string][]float64
	cpus   []string
	cpuUs  map[string][]float64
	runs   int
}

// cpuPrefix marks a trace line that holds CPU time, not a timestamp.
const cpuPrefix = "cpu:"

func (e *env) recordTrace(group string, st []traceStage) {
	if len(st) == 0 {
		return
	}
	t := e.traces[group]
	if t == nil {
		t = &traceTable{us: map[string][]float64{}, cpuUs: map[string][]float64{}}
		e.traces[group] = t
	}
	t.runs++
	for _, s := range st {
		if name, ok := strings.CutPrefix(s.name, cpuPrefix); ok {
			if _, ok := t.cpuUs[name]; !ok {
				t.cpus = append(t.cpus, name)
			}
			t.cpuUs[name] = append(t.cpuUs[name], s.us)
			continue
		}
		if _, ok := t.us[s.name]; !ok {
			t.stages = append(t.stages, s.name)
		}
		t.us[s.name] = append(t.us[s.name], s.us)
	}
}

// ordered returns the stages in the order of their median time: stages that
// run concurrently (the sandbox's and the parent's) print in either order
// from run to run.
func (t *traceTable) ordered() []string {
	st := append([]string(nil), t.stages...)
	sort.SliceStable(st, func(i, j int) bool { return quantile(t.us[st[i]], 0.5) < quantile(t.us[st[j]], 0.5) })
	return st
}
