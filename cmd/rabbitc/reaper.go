package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// reaperMain is --init's PID 1, as docker's --init (tini) is: it starts the
// payload as its child, in a process group of its own (the terminal's
// foreground one with -t), passes on every signal rabbitc forwards, reaps
// every process that ends up as its child (orphans are reparented to PID
// 1), and exits with the payload's status once the payload has ended.
//
// Init execs it from a sealed copy of the binary (userns.SealedCopy) after
// the payload's whole set-up, so it runs under the payload's credentials,
// capabilities, no_new_privs and seccomp filter, and the payload inherits
// them from it. argv is the payload's path, then its argv.
func reaperMain(argv []string) int {
	if len(argv) < 2 {
		fmt.Fprintln(os.Stderr, "rabbitc: init reaper: no payload")
		return 125
	}
	sigc := make(chan os.Signal, 64)
	signal.Notify(sigc, append([]os.Signal{syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGTSTP}, forwarded...)...)
	tty := term.IsTerminal(0)
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: tty, Ctty: 0},
	}
	pid, err := syscall.ForkExec(argv[0], argv[1:], attr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rabbitc: exec %s: %v\n", argv[1], err)
		if err == syscall.ENOENT {
			return 127
		}
		return 126
	}
	for sig := range sigc {
		if sig != syscall.SIGCHLD {
			syscall.Kill(pid, sig.(syscall.Signal))
			continue
		}
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if wpid <= 0 {
				break
			}
			if wpid != pid {
				continue // an orphan: reaped, that is all
			}
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
	return 125
}
