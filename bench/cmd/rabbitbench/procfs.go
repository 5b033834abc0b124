package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, which /proc/PID/stat counts in on every Linux port
// that this benchmark runs on.
const clockTicks = 100

// procStat is the part of /proc/PID/stat that the benchmark uses.
type procStat struct {
	pid   int
	comm  string
	state byte // R, S, D, Z, ...
	ppid  int
	sid   int    // session id
	ticks uint64 // utime + stime
	start uint64 // start time in clock ticks since boot: tells a reused pid apart
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// comm may hold spaces and parentheses: it ends at the last ')'.
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); ppid is field 4, session 6, utime 14,
	// stime 15, starttime 22.
	if len(f) < 20 || len(f[0]) == 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ := strconv.Atoi(f[1])
	sid, _ := strconv.Atoi(f[3])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{pid: pid, comm: string(b[open+1 : end]), state: f[0][0], ppid: ppid, sid: sid,
		ticks: ut + st, start: start}, nil
}

// cpuSeconds is the user plus system time of pids, skipping those gone.
func cpuSeconds(pids []int) float64 {
	var t uint64
	for _, p := range pids {
		if s, err := readStat(p); err == nil {
			t += s.ticks
		}
	}
	return float64(t) / clockTicks
}

// rssKiB is VmRSS of pid from /proc/PID/status.
func rssKiB(pid int) (int, error) {
	return procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
}

// anonKiB is RssAnon of pid: its resident anonymous memory (heap, stacks),
// without the pages of its binary and libraries, which the page cache
// shares with every other process of the same file.
func anonKiB(pid int) (int, error) {
	return procKiB(fmt.Sprintf("/proc/%d/status", pid), "RssAnon:")
}

func procKiB(path, key string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb, err
		}
	}
	return 0, fmt.Errorf("read %s: no %s (a zombie?)", path, key)
}

// allProcs reads the stat of every process visible in /proc.
func allProcs() []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(pid); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// descendants returns root and every process below it.
func descendants(root int) []procStat {
	procs := allProcs()
	kids := map[int][]procStat{}
	var self *procStat
	for i, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p)
		if p.pid == root {
			self = &procs[i]
		}
	}
	if self == nil {
		return nil
	}
	out := []procStat{*self}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i].pid]...)
	}
	return out
}

// listenerPID finds the process that holds the TCP socket listening on
// 127.0.0.1:port in this network namespace: the forwarding process.
func listenerPID(port int) (int, error) {
	inode, err := listenInode(port)
	if err != nil {
		return 0, err
	}
	want := fmt.Sprintf("socket:[%s]", inode)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); l == want {
				// A payload that inherited the listener is not the forwarder.
				if st, err := readStat(pid); err == nil && !payloadComms[st.comm] {
					return pid, nil
				}
				break
			}
		}
	}
	return 0, fmt.Errorf("find owner of listener 127.0.0.1:%d: no process of ours holds socket inode %s", port, inode)
}

func listenInode(port int) (string, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) >= 10 && f[1] == local && f[3] == "0A" {
			return f[9], nil
		}
	}
	return "", fmt.Errorf("find listener 127.0.0.1:%d in /proc/net/tcp: none", port)
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
