package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The connect phase measures issue 16's last outbound bar: the latency that
// a switched connect adds over a connect on the host. The client is
// benchconnect (bench/cmd/benchconnect, static, in the bench rootfs's /bin):
// it makes connectsPerRound sequential blocking connects (fewer if
// connectSeconds pass first), each timed from socket() until connect()
// returns established, and prints their median and 90th percentile. The
// containers are the outbound phase's, and it runs in their loops; the
// direct client runs on the host in a session of its own, in the same
// rounds. The servers accept and close at once: benchconnect -listen on the
// host's 127.0.0.1 (reached from a container at 10.0.2.2 with
// --allow-host-loopback) and on the test host that run.sh made.

const (
	connectBin       = "benchconnect"
	connectsPerRound = 2000
	connectSeconds   = 3
	// Metrics of the connect groups.
	connectMedian   = "connect, median of the round"
	connectP90      = "connect, p90 of the round"
	connectAdded    = "added over direct (round's median − direct's, paired by round)"
	connectSwitched = "connects on host sockets (switched)"
	// connectBarUs is issue 16's bar: a switched connect adds at most
	// this much to the median over a direct one.
	connectBarUs = 30
)

func connectGroupName(target string) string {
	return fmt.Sprintf("connect latency to %s: socket + connect until established, %d sequential connects per round", target, connectsPerRound)
}

// connectGroups runs one group per target with the outbound contenders.
func (e *env) connectGroups(res *results, peers []*outPeer, targets map[string]*outTarget) {
	hostBin := filepath.Join(e.rootfs, "bin", connectBin)
	// The host loopback server, in a session of its own like every server.
	srv := e.startPeer("benchconnect -listen on 127.0.0.1", true, []string{hostBin, "-listen", "127.0.0.1:IPERF"})
	if srv.skipped == "" {
		if err := waitListen(srv.iperfPort, srv.exited, 10*time.Second); err != nil {
			srv.skipped = oneLine(err.Error() + ": " + srv.stderr.String())
		}
	}
	defer srv.stop()
	lo := &outTarget{name: targetLoopback, addr: "10.0.2.2", direct: "127.0.0.1", port: srv.iperfPort}
	if srv.skipped != "" {
		lo.skipped = "benchconnect -listen on 127.0.0.1: " + srv.skipped
	}
	th := *targets[targetTestHost]
	if th.skipped == "" {
		// Same address as the iperf3 server, whose route testHost checked.
		v := os.Getenv("RABBITC_BENCH_TESTHOST_CONNECT")
		ap, err := netip.ParseAddrPort(v)
		switch {
		case v == "":
			th.skipped = "no connect server on the test host (RABBITC_BENCH_TESTHOST_CONNECT unset: bench/run.sh starts it)"
		case err != nil:
			th.skipped = fmt.Sprintf("RABBITC_BENCH_TESTHOST_CONNECT=%q: %v", v, err)
		case ap.Addr().String() != th.addr:
			th.skipped = fmt.Sprintf("RABBITC_BENCH_TESTHOST_CONNECT=%q is not at the test host %s", v, th.addr)
		default:
			th.port = int(ap.Port())
		}
	}
	for _, t := range []*outTarget{lo, &th} {
		t := t
		group := connectGroupName(t.name)
		cs := outContenders(peers, t, func(p *outPeer) ([]measure, error) { return e.connectRound(p, t, hostBin) })
		alternate(res, group, e.loadRounds, cs, e.logf)
		addedOverDirect(res, group)
		for _, p := range peers {
			if p.note != "" && p.skipped == "" && t.skipped == "" {
				res.note(group, p.name, p.note)
			}
		}
	}
}

// connectResult is benchconnect's line.
type connectResult struct {
	N        int     `json:"n"`
	MedianUs float64 `json:"median_us"`
	P90Us    float64 `json:"p90_us"`
	Switched int     `json:"switched"`
}

// connectRound runs benchconnect once through p against t.
func (e *env) connectRound(p *outPeer, t *outTarget, hostBin string) ([]measure, error) {
	addr := t.addr
	if p.ctl == nil {
		addr = t.direct
	}
	args := []string{"-connect", addr + ":" + strconv.Itoa(t.port), "-n", strconv.Itoa(connectsPerRound),
		"-max-seconds", strconv.Itoa(connectSeconds), "-container-net", containerNet}
	timeout := time.Duration(connectSeconds+20) * time.Second
	var out []byte
	var err error
	if p.ctl == nil {
		// In a session of its own, as every container's client is.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		cmd := exec.CommandContext(ctx, hostBin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		out, err = cmd.CombinedOutput()
		cancel()
		if err != nil {
			err = fmt.Errorf("%s %s: %w: %s", connectBin, strings.Join(args, " "), err, oneLine(string(out)))
		}
	} else {
		out, err = p.ctl.run(append([]string{filepath.Join(p.binDir, connectBin)}, args...), timeout, p.exited)
	}
	if err != nil {
		return nil, err
	}
	var r connectResult
	if err := json.Unmarshal(out, &r); err != nil || r.N == 0 {
		return nil, fmt.Errorf("%s: unexpected output: %s", connectBin, oneLine(string(out)))
	}
	ms := []measure{
		{metric: connectMedian, unit: "µs", value: r.MedianUs},
		{metric: connectP90, unit: "µs", value: r.P90Us},
		{metric: "connects in the round (at most " + strconv.Itoa(connectsPerRound) + ", " + strconv.Itoa(connectSeconds) + " s)", unit: "n", higher: true, value: float64(r.N)},
	}
	if p.countSwitched {
		ms = append(ms, measure{metric: connectSwitched, unit: "%", value: 100 * float64(r.Switched) / float64(r.N)})
	}
	return ms, nil
}

// addedOverDirect records, for every contender but the direct client, its
// median connect minus the direct client's in the same round.
func addedOverDirect(res *results, group string) {
	d := res.lookup(group, connectMedian, directName)
	if d == nil {
		return
	}
	byRound := map[int]float64{}
	for i, rd := range d.rounds {
		byRound[rd] = d.vals[i]
	}
	for _, s := range append([]*series(nil), res.order...) {
		if s.group != group || s.metric != connectMedian || s.peer == directName {
			continue
		}
		a := res.get(group, connectAdded, "µs", s.peer, false)
		for i, rd := range s.rounds {
			if v, ok := byRound[rd]; ok {
				a.vals = append(a.vals, s.vals[i]-v)
				a.rounds = append(a.rounds, rd)
			}
		}
	}
}

// connectBars are issue 16's connect bars: for rabbitc as it runs here and
// for the accelerated contender, the median over the rounds of the added
// latency at most connectBarUs, counted only where every connect of every
// round was switched.
func connectBars() []bar {
	var bs []bar
	for _, t := range []struct{ name, short string }{{targetLoopback, "loopback"}, {targetTestHost, "test host"}} {
		for _, subj := range []struct{ name, short string }{{rabbitcName, "rabbitc"}, {accelName, "rabbitc+NET_ADMIN"}} {
			bs = append(bs, bar{text: fmt.Sprintf("connect to %s: %s adds ≤ %d µs over direct, median (every connect switched)", t.short, subj.short, connectBarUs),
				group: connectGroupName(t.name), metric: connectAdded, peer: directName, atMost: true, limit: connectBarUs,
				subject: subj.name, addedUs: true, allSwitched: connectSwitched})
		}
	}
	return bs
}

// evalAddedBar evaluates a bar on an added latency (addedUs).
func evalAddedBar(res *results, b bar) barResult {
	br := barResult{bar: b, ratio: math.NaN()}
	s := res.lookup(b.group, b.metric, b.who())
	if s == nil || len(s.vals) == 0 {
		br.status = "n/a"
		for _, n := range res.notes {
			if n.group == b.group && (n.peer == b.peer || n.peer == b.who()) && strings.HasPrefix(n.text, "not run") {
				br.status = "n/a: " + n.peer + " " + n.text
			}
		}
		return br
	}
	br.ratio = s.median()
	if b.allSwitched != "" {
		sw := res.lookup(b.group, b.allSwitched, b.who())
		if sw == nil || len(sw.vals) == 0 {
			br.status = "n/a: no switched share recorded"
			return br
		}
		if m := sw.min(); m < 100 {
			br.status = fmt.Sprintf("n/a: not every connect was switched (%.1f%% in the lowest round)", m)
			return br
		}
	}
	if br.ratio <= b.limit {
		br.status = "met"
	} else {
		br.status = "MISSED"
	}
	return br
}
