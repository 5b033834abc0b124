// Command entry is nsenter's test program, linked with nsenter.BuildFlag:
// it prints what the entry point did, then exits with EXIT_CODE, or dies of
// SIGTERM with KILL_SELF set, so that the test sees the parent pass the
// child's status on.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/rabbitc/rabbitc/nsenter"
)

func main() {
	uts, _ := os.Readlink("/proc/self/ns/uts")
	if len(os.Args) > 2 && os.Args[2] == "watchdog" {
		fmt.Printf("watched=%v\n", nsenter.Watched())
		return
	}
	fmt.Printf("linked=%v joined=%v uts=%s ppid=%d\n", nsenter.Linked(), nsenter.Joined(), uts, os.Getppid())
	if os.Getenv("KILL_SELF") != "" {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {} // the runtime delivers it on a thread of its own: wait for it, never exit 0
	}
	code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
	os.Exit(code)
}
