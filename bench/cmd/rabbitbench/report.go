package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// bar is one target from issue 4: rabbitc's median over the peer's median
// for metric in group must be at most (or at least) limit.
type bar struct {
	text          string
	group, metric string
	peer          string
	atMost        bool
	limit         float64
	// subject is the contender measured against peer: rabbitc when empty.
	subject string
	// addedUs: the bar is on metric, an added latency in µs already paired
	// with peer by round (connect.go), not on a ratio: the median of it
	// must be at most limit.
	addedUs bool
	// allSwitched, when set, names a metric (a share in %) that must be
	// 100 in every round of the subject for the bar to count.
	allSwitched string
}

// peerBar is a bar of rabbitc against peer.
func peerBar(text, group, metric, peer string, atMost bool, limit float64) bar {
	return bar{text: text, group: group, metric: metric, peer: peer, atMost: atMost, limit: limit}
}

func (b bar) who() string {
	if b.subject == "" {
		return rabbitcName
	}
	return b.subject
}

func bars() []bar {
	var bs []bar
	nonet := "start, no network: start to exit of /bin/true"
	fb := "start, slirp4netns + 1 publish: start to first HTTP byte"
	bs = append(bs,
		peerBar("start, no network ≤ 1.0× crun rootless", nonet, "start to exit", "crun rootless", true, 1.0),
		peerBar("start, no network ≤ 2.0× newuidmap floor", nonet, "start to exit", "floor 2: unshare newuidmap + chroot", true, 2.0),
		peerBar("start, no network, no seccomp ≤ 1.0× crun rootless without seccomp (issue 13)", "start, no network, no seccomp: start to exit of /bin/true", "start to exit", "crun rootless, no seccomp", true, 1.0),
		peerBar("run -d returns ≤ 1.2× the foreground start (issue 13)", "start, detached: run -d --rm returns, against a foreground run to exit, of /bin/true", "start to return", "rabbitc foreground", true, 1.2),
		peerBar("start to first byte ≤ 0.5× RootlessKit+runc", fb, "start to first byte", "RootlessKit builtin + runc", true, 0.5),
		peerBar("start to first byte ≤ 0.25× podman", fb, "start to first byte", "podman", true, 0.25),
		peerBar("start to first byte ≤ 1.3× slirp floor", fb, "start to first byte", "floor: unshare + slirp4netns hostfwd", true, 1.3),
		peerBar("exec into a running container ≤ 1.0× crun rootless", execGroup, "exec to exit", "crun rootless", true, 1.0),
		peerBar("OCI create + start of a bundle ≤ 1.0× crun rootless (issue 14)", ociGroup, "create + start", "crun rootless", true, 1.0),
		peerBar("pull ≤ 0.7× podman (overlay), wall (issue 15)", pullGroup, "wall", "podman (overlay)", true, 0.7),
		peerBar("pull ≤ 0.8× podman (overlay), CPU (issue 15)", pullGroup, "CPU", "podman (overlay)", true, 0.8),
		peerBar("first run of a cached image ≤ 0.15× podman (issue 15)", firstRunGroup, "start to exit", "podman", true, 0.15),
	)
	rk := "RootlessKit builtin"
	for _, dir := range []string{"host→container", "container→host"} {
		for _, n := range []int{1, 4} {
			g := fmt.Sprintf("iperf3 %s, %d stream(s)", dir, n)
			bs = append(bs,
				peerBar(fmt.Sprintf("throughput %s %d stream(s) ≥ 1.0× RootlessKit builtin", dir, n), g, "throughput", rk, false, 1.0),
				peerBar(fmt.Sprintf("forwarder CPU/GB %s %d stream(s) ≤ 0.6× RootlessKit builtin", dir, n), g, "forwarder CPU per GB", rk, true, 0.6),
			)
		}
	}
	for _, c := range []string{"1 connection", "32 connections"} {
		g := "HTTP keep-alive, " + c
		bs = append(bs,
			peerBar("requests/s over "+c+" ≥ 1.0× RootlessKit builtin", g, "requests per second", rk, false, 1.0),
			peerBar("p99 over "+c+" ≤ 1.2× RootlessKit builtin", g, "p99 latency", rk, true, 1.2),
		)
	}
	bs = append(bs,
		peerBar("new-connection rate ≥ 1.2× RootlessKit builtin", "HTTP new connection per request (Connection: close), 32 clients", "requests per second", rk, false, 1.2),
		peerBar("idle memory ≤ 0.7× RootlessKit (parent+child+slirp4netns)", "memory: idle, after one request (RSS of the runtime's processes)", "RSS", rk, true, 0.7),
	)
	bs = append(bs, publishDirectBars()...)
	bs = append(bs, outboundBars()...)
	return append(bs, connectBars()...)
}

// publishDirectBars are issue 16's bars for a published port with
// --publish-mode=direct, for the contender given CAP_NET_ADMIN (see
// launcher.go), against the direct loopback in the same rounds.
func publishDirectBars() []bar {
	const subj, short, direct = directPubName, "rabbitc+NET_ADMIN --publish-mode=direct", "direct loopback"
	b := func(text, group, metric string, atMost bool, limit float64) bar {
		return bar{text: short + ": " + text, group: group, metric: metric, peer: direct, atMost: atMost, limit: limit, subject: subj}
	}
	var bs []bar
	for _, dir := range []string{"host→container", "container→host"} {
		for _, n := range []int{1, 4} {
			bs = append(bs, b(fmt.Sprintf("throughput %s %d stream(s) ≥ 0.95× direct", dir, n),
				fmt.Sprintf("iperf3 %s, %d stream(s)", dir, n), "throughput", false, 0.95))
		}
	}
	for _, c := range []string{"1 connection", "32 connections"} {
		g := "HTTP keep-alive, " + c
		bs = append(bs,
			b("requests/s over "+c+" ≥ 0.9× direct", g, "requests per second", false, 0.9),
			b("median latency over "+c+" ≤ 1.15× direct", g, "p50 latency", true, 1.15))
	}
	return append(bs,
		b("new-connection rate ≥ 0.85× direct", "HTTP new connection per request (Connection: close), 32 clients", "requests per second", false, 0.85),
		b("the server sees the client's address (share of requests ≥ 1.0× direct)", clientAddrGroup, "requests whose client address the server saw", false, 1.0))
}

// outboundBars are issue 16's outbound bars, for rabbitc as it runs here
// and for the contender given CAP_NET_ADMIN (see launcher.go).
func outboundBars() []bar {
	var bs []bar
	for _, g := range outboundGroups() {
		t := "loopback"
		if g.target == targetTestHost {
			t = "test host"
		}
		dir := "→server"
		if g.reverse {
			dir = "←server"
		}
		// Short enough for the chart's labels: "rabbitc+NET_ADMIN" is the
		// accelerated contender, "slirp4netns" podman's.
		for _, subj := range []struct{ name, short string }{{rabbitcName, "rabbitc"}, {accelName, "rabbitc+NET_ADMIN"}} {
			for _, peer := range []struct {
				name, short string
				limit       float64
			}{{directName, "direct", 0.95}, {pastaName, "pasta", 1.5}, {podmanSlirp, "slirp4netns", 4}} {
				bs = append(bs, bar{text: fmt.Sprintf("outbound %s %s -P %d: %s ≥ %g× %s", t, dir, g.streams, subj.short, peer.limit, peer.short),
					group: g.name(), metric: "throughput", peer: peer.name, limit: peer.limit, subject: subj.name})
			}
		}
	}
	return bs
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// row is one line of the table.
type row struct {
	group, metric, unit, peer string
	median, min, max          float64
	n                         int
	ratio                     float64 // rabbitc's median ÷ the peer's, NaN for rabbitc itself
	paired                    float64 // median of rabbitc ÷ peer within each round
	note                      string
}

func rows(res *results) []row {
	var out []row
	seen := map[[2]string]bool{}
	for _, s := range res.order {
		r := row{group: s.group, metric: s.metric, unit: s.unit, peer: s.peer,
			median: s.median(), min: s.min(), max: s.max(), n: len(s.vals), ratio: math.NaN(), paired: math.NaN()}
		if s.peer != rabbitcName {
			if v, ok := res.ratio(s.group, s.metric, s.peer); ok {
				r.ratio = v
			}
			if v, ok := res.pairedRatio(s.group, s.metric, s.peer); ok {
				r.paired = v
			}
		}
		out = append(out, r)
		seen[[2]string{s.group, s.peer}] = true
	}
	for _, n := range res.notes {
		if !seen[[2]string{n.group, n.peer}] && strings.HasPrefix(n.text, "not run") {
			out = append(out, row{group: n.group, peer: n.peer, median: math.NaN(), min: math.NaN(),
				max: math.NaN(), ratio: math.NaN(), paired: math.NaN(), note: n.text})
			seen[[2]string{n.group, n.peer}] = true
		}
	}
	// Keep groups together, in the order they ran; within a group, metrics
	// in order, rabbitc first.
	gi, mi := map[string]int{}, map[[2]string]int{}
	for _, g := range res.groups {
		gi[g] = len(gi)
	}
	for _, r := range out {
		if _, ok := gi[r.group]; !ok {
			gi[r.group] = len(gi)
		}
		if _, ok := mi[[2]string{r.group, r.metric}]; !ok {
			mi[[2]string{r.group, r.metric}] = len(mi)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if gi[a.group] != gi[b.group] {
			return gi[a.group] < gi[b.group]
		}
		if a.metric == "" || b.metric == "" {
			return b.metric == "" && a.metric != ""
		}
		if mi[[2]string{a.group, a.metric}] != mi[[2]string{b.group, b.metric}] {
			return mi[[2]string{a.group, a.metric}] < mi[[2]string{b.group, b.metric}]
		}
		return a.peer == rabbitcName && b.peer != rabbitcName
	})
	// Other notes (failed rounds, process lists) go on the first row of
	// their peer in their group.
	done := map[[2]string]bool{}
	for i := range out {
		k := [2]string{out[i].group, out[i].peer}
		if out[i].metric == "" || done[k] {
			continue
		}
		done[k] = true
		var texts []string
		for _, n := range res.notes {
			if n.group == k[0] && n.peer == k[1] && !strings.HasPrefix(n.text, "not run") {
				texts = append(texts, n.text)
			}
		}
		out[i].note = strings.Join(texts, "; ")
	}
	return out
}

type barResult struct {
	bar
	ratio  float64
	status string
}

func evalBars(res *results) []barResult {
	var out []barResult
	for _, b := range bars() {
		if b.addedUs {
			out = append(out, evalAddedBar(res, b))
			continue
		}
		r, ok := res.pairedRatioOf(b.group, b.metric, b.who(), b.peer)
		if !ok {
			r, ok = res.ratioOf(b.group, b.metric, b.who(), b.peer)
		}
		br := barResult{bar: b, ratio: r}
		switch {
		case !ok:
			br.status = "n/a"
			for _, n := range res.notes {
				if n.group == b.group && (n.peer == b.peer || n.peer == b.who()) && strings.HasPrefix(n.text, "not run") {
					br.status = "n/a: " + n.peer + " " + n.text
				}
			}
		case b.atMost && r <= b.limit, !b.atMost && r >= b.limit:
			br.status = "met"
		default:
			br.status = "MISSED"
		}
		out = append(out, br)
	}
	return out
}

func machineInfo(e *env) []string {
	ver := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return argv[0] + " not installed"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	cpus := runtime.NumCPU()
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mode := fmt.Sprintf("%d alternating rounds per start-up measurement, %d per load of %ds", e.rounds, e.loadRounds, e.loadSecs)
	if e.quick {
		mode += " (BENCH_QUICK=1: a quick development run, not the reference table)"
	}
	return []string{
		"date: " + time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		fmt.Sprintf("machine: Linux %s, %d CPUs (%s)", strings.TrimSpace(string(kernel)), cpus, model),
		"rabbitc: " + ver(e.rabbitc, "version") + ", commit " + os.Getenv("RABBITC_BENCH_COMMIT"),
		"peers: " + strings.Join([]string{
			ver("unshare", "--version"), ver("bwrap", "--version"), ver("crun", "--version"),
			ver("runc", "--version"), ver("rootlesskit", "--version"), ver("podman", "--version"),
			ver("slirp4netns", "--version"), "pasta (passt) " + pkgVersion("passt"),
			ver("iperf3", "--version"), ver("wrk", "-v"),
		}, "; "),
		"method: " + mode,
		autogroupNote(),
		congestionNote(),
		os.Getenv("RABBITC_BENCH_NOTE"),
	}
}

// autogroupNote says whether the scheduler groups processes by session,
// which is why every server payload runs in a session of its own (see
// setsidPayload).
func autogroupNote() string {
	b, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled")
	switch {
	case err != nil:
		return "scheduler: no kernel.sched_autogroup_enabled (no autogroups); in the forwarding measurements every server payload ran in a session of its own, as under a container runtime"
	case strings.TrimSpace(string(b)) == "0":
		return "scheduler: kernel.sched_autogroup_enabled=0 (autogroups off); in the forwarding measurements every server payload ran in a session of its own, as under a container runtime"
	}
	return "scheduler: kernel.sched_autogroup_enabled=" + strings.TrimSpace(string(b)) +
		" (autogroups on: each session is a scheduling group); in the forwarding measurements every server payload ran in a session of its own, as under a container runtime, and wrk, iperf3 and every forwarder in the bench's session"
}

// congestionNote gives the host's default TCP congestion control, which every
// new network namespace inherits: with a pacing one (bbr) each forwarder's
// sockets pay for pacing unless they choose otherwise, as rabbitc's loopback
// hops do (portfwd.unpaced).
func congestionNote() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		return "tcp: default congestion control unknown (" + err.Error() + ")"
	}
	cc := strings.TrimSpace(string(b))
	note := "tcp: net.ipv4.tcp_congestion_control=" + cc + " (new network namespaces inherit it)"
	if allowed, err := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control"); err == nil {
		note += ", tcp_allowed_congestion_control=" + strings.TrimSpace(string(allowed))
	}
	if strings.HasPrefix(cc, "bbr") {
		note += "; rabbitc's forwarder gives its loopback hops cubic (reno on the host's side where cubic is not allowed; no pacing either way), the peers keep " + cc
	}
	return note
}

func pkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "(version unknown)"
	}
	return string(out)
}

func report(e *env, res *results, dir, stem string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rs := rows(res)
	bs := evalBars(res)
	info := machineInfo(e)
	writeText(os.Stdout, rs, bs, e, info)
	f, err := os.Create(filepath.Join(dir, stem+".md"))
	if err != nil {
		return err
	}
	writeMarkdown(f, rs, bs, e, info)
	if err := f.Close(); err != nil {
		return err
	}
	f, err = os.Create(filepath.Join(dir, stem+".csv"))
	if err != nil {
		return err
	}
	writeCSV(f, rs)
	if err := f.Close(); err != nil {
		return err
	}
	return writeChart(filepath.Join(dir, stem+".png"), res)
}

func writeText(w io.Writer, rs []row, bs []barResult, e *env, info []string) {
	fmt.Fprintln(w)
	for _, l := range info {
		if l != "" {
			fmt.Fprintln(w, l)
		}
	}
	group := ""
	for _, r := range rs {
		if r.group != group {
			group = r.group
			fmt.Fprintf(w, "\n== %s\n", group)
			fmt.Fprintf(w, "  %-40s %-38s %10s %10s %10s %4s %8s %8s\n", "metric", "peer", "median", "min", "max", "n", "med/med", "paired")
		}
		if r.metric == "" {
			fmt.Fprintf(w, "  %-40s %-38s %s\n", "", r.peer, r.note)
			continue
		}
		ratio, paired := "", ""
		if !math.IsNaN(r.ratio) {
			ratio = fmt.Sprintf("%.2f×", r.ratio)
		}
		if !math.IsNaN(r.paired) {
			paired = fmt.Sprintf("%.2f×", r.paired)
		}
		fmt.Fprintf(w, "  %-40s %-38s %10s %10s %10s %4d %8s %8s\n", r.metric+" ("+r.unit+")", r.peer,
			fmtNum(r.median), fmtNum(r.min), fmtNum(r.max), r.n, ratio, paired)
	}
	writeTraceText(w, e)
	fmt.Fprintf(w, "\n== bars (issues 4, 13, 14, 15 and 16)\n")
	for _, b := range bs {
		status, why, _ := strings.Cut(b.status, ": ")
		fmt.Fprintf(w, "  %-7s %-72s %s\n", status, b.text, b.valueText())
		if why != "" {
			fmt.Fprintf(w, "          (%s)\n", why)
		}
	}
}

// valueText is the bar's ratio, or its added µs for an addedUs bar.
func (b barResult) valueText() string {
	if b.addedUs && !math.IsNaN(b.ratio) {
		return fmt.Sprintf("%+.1f µs", b.ratio)
	}
	return ratioText(b.ratio)
}

func ratioText(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func writeTraceText(w io.Writer, e *env) {
	for _, g := range sortedKeys(e.traces) {
		t := e.traces[g]
		fmt.Fprintf(w, "\n== rabbitc stages (RABBITC_TRACE=1), %s, %d runs\n", g, t.runs)
		prev := 0.0
		for _, st := range t.ordered() {
			m := quantile(t.us[st], 0.5)
			fmt.Fprintf(w, "  %-36s at %9.0f µs   +%8.0f µs\n", st, m, m-prev)
			prev = m
		}
		if len(t.cpus) > 0 {
			fmt.Fprintf(w, "  CPU per process (user+system, median):\n")
			for _, c := range t.cpus {
				fmt.Fprintf(w, "  %-36s %9.2f ms\n", c, quantile(t.cpuUs[c], 0.5)/1000)
			}
		}
	}
}

func sortedKeys(m map[string]*traceTable) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func writeMarkdown(w io.Writer, rs []row, bs []barResult, e *env, info []string) {
	fmt.Fprintln(w, "<!-- written by bench/cmd/rabbitbench; do not edit -->")
	for _, l := range info {
		if l != "" {
			fmt.Fprintf(w, "- %s\n", mdEscape(l))
		}
	}
	fmt.Fprintln(w, "\n### Bars (issues 4, 13, 14, 15 and 16): median over the rounds of rabbitc ÷ the peer in the same round (issue 16's: of the contender the bar names)")
	fmt.Fprintln(w, "\n| bar | ratio | status |\n|---|---:|---|")
	for _, b := range bs {
		fmt.Fprintf(w, "| %s | %s | %s |\n", mdEscape(b.text), b.valueText(), mdEscape(b.status))
	}
	group := ""
	for _, r := range rs {
		if r.group != group {
			group = r.group
			fmt.Fprintf(w, "\n### %s\n\n", mdEscape(group))
			fmt.Fprintln(w, "| metric | peer | median | min | max | n | rabbitc ÷ peer, medians | rabbitc ÷ peer, paired by round | note |\n|---|---|---:|---:|---:|---:|---:|---:|---|")
		}
		if r.metric == "" {
			fmt.Fprintf(w, "| | %s | | | | | | | %s |\n", mdEscape(r.peer), mdEscape(r.note))
			continue
		}
		peer := mdEscape(r.peer)
		if r.peer == rabbitcName {
			peer = "**rabbitc**"
		}
		fmt.Fprintf(w, "| %s (%s) | %s | %s | %s | %s | %d | %s | %s | %s |\n", mdEscape(r.metric), r.unit, peer,
			fmtNum(r.median), fmtNum(r.min), fmtNum(r.max), r.n, ratioText(r.ratio), ratioText(r.paired), mdEscape(r.note))
	}
	for _, g := range sortedKeys(e.traces) {
		t := e.traces[g]
		fmt.Fprintf(w, "\n### rabbitc stages (RABBITC_TRACE=1): %s, median of %d runs\n\n", mdEscape(g), t.runs)
		fmt.Fprintln(w, "| stage | µs since start | µs since previous stage |\n|---|---:|---:|")
		prev := 0.0
		for _, st := range t.ordered() {
			m := quantile(t.us[st], 0.5)
			fmt.Fprintf(w, "| %s | %.0f | %.0f |\n", mdEscape(st), m, m-prev)
			prev = m
		}
		if len(t.cpus) > 0 {
			fmt.Fprintf(w, "\nCPU per process (user+system; `cpu:` lines: getrusage of the process itself, or for "+
				"children and init+payload of its reaped children and theirs), median of %d runs:\n\n", t.runs)
			fmt.Fprintln(w, "| process | ms |\n|---|---:|")
			for _, c := range t.cpus {
				fmt.Fprintf(w, "| %s | %.2f |\n", mdEscape(c), quantile(t.cpuUs[c], 0.5)/1000)
			}
		}
	}
}

func writeCSV(w io.Writer, rs []row) {
	c := csv.NewWriter(w)
	c.Write([]string{"group", "metric", "unit", "peer", "median", "min", "max", "n", "rabbitc_over_peer_medians", "rabbitc_over_peer_paired", "note"})
	f := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return fmt.Sprintf("%g", v)
	}
	for _, r := range rs {
		c.Write([]string{r.group, r.metric, r.unit, r.peer, f(r.median), f(r.min), f(r.max),
			fmt.Sprint(r.n), f(r.ratio), f(r.paired), r.note})
	}
	c.Flush()
}
