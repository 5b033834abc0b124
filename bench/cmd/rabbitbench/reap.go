package main

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The bench must leave no process behind. A peer's server payload runs in a
// session of its own (see sessionOf), so killing the peer's process group
// no longer reaches it, and a payload like "iperf3 & exec httpd" leaves
// iperf3 an orphan when httpd dies first. So rabbitbench is a child
// subreaper: the orphans of everything it started are reparented to it
// rather than to PID 1 (which on some machines never reaps them, leaving
// <defunct> entries), and it kills and reaps them itself.

// becomeSubreaper makes orphaned descendants children of this process.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// waited holds the pids of the children that an exec.Cmd waits for in a
// goroutine while other work goes on (the long-running peers): reapOrphans
// must leave their exit status to that goroutine.
var waited sync.Map

// reapOrphans reaps every zombie child of this process that no exec.Cmd
// waits for: orphans reparented here. It is called only where no
// synchronous exec.Cmd is in flight (between rounds, after a phase).
func reapOrphans() int {
	self := os.Getpid()
	n := 0
	for _, s := range allProcs() {
		if s.ppid != self || s.state != 'Z' {
			continue
		}
		if _, ok := waited.Load(s.pid); ok {
			continue
		}
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(s.pid, &ws, syscall.WNOHANG, nil); err == nil && pid == s.pid {
			n++
		}
	}
	return n
}

// alive reports whether s still runs (a zombie counts as gone once reaped:
// this reaps it when it is an orphan of ours).
func alive(s procStat) bool {
	cur, err := readStat(s.pid)
	if err != nil || cur.start != s.start {
		return false
	}
	if cur.state == 'Z' && cur.ppid == os.Getpid() {
		if _, ok := waited.Load(s.pid); ok {
			return true // its exec.Cmd goroutine reaps it
		}
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(s.pid, &ws, syscall.WNOHANG, nil); err == nil && pid == s.pid {
			return false
		}
	}
	return true
}

// finish waits up to grace for procs to end on their own, then kills those
// left with SIGKILL and waits up to 5 s more for them to be gone and reaped.
// It returns what is still there.
func finish(procs []procStat, grace time.Duration) []procStat {
	deadline := time.Now().Add(grace)
	killed := false
	for {
		var left []procStat
		for _, s := range procs {
			if alive(s) {
				left = append(left, s)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if !killed && time.Now().After(deadline) {
			for _, s := range left {
				syscall.Kill(s.pid, syscall.SIGKILL)
			}
			killed = true
			deadline = time.Now().Add(5 * time.Second)
		} else if killed && time.Now().After(deadline) {
			return left
		}
		procs = left
		time.Sleep(5 * time.Millisecond)
	}
}

// sessionOf returns the session id of pid, 0 when it is gone.
func sessionOf(pid int) int {
	s, err := readStat(pid)
	if err != nil {
		return 0
	}
	return s.sid
}
