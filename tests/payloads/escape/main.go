// Command escape is a payload that does the ordinary things that take a
// parent-death signal away, to show that the container still ends with
// rabbitc. Each argument is one step, done in order:
//
//	setuid       setresgid/setresuid to 1000, as su-exec or gosu do (the kernel clears the parent-death signal)
//	nopdeathsig  prctl(PR_SET_PDEATHSIG, 0)
//	doublefork   a grandchild in a session of its own, its parent gone
//	ignore       ignore SIGTERM, SIGINT and SIGHUP
//
// Then it prints "ready" (with the grandchild's pid when there is one) and
// sleeps for 60 s.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "grandchild" {
		grandchild()
		return
	}
	extra := ""
	for _, step := range os.Args[1:] {
		var err error
		switch step {
		case "setuid":
			err = setuid(1000)
		case "nopdeathsig":
			if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, 0, 0); e != 0 {
				err = e
			}
		case "doublefork":
			var pid int
			pid, err = doubleFork()
			extra = " grandchild " + strconv.Itoa(pid)
		case "ignore":
			signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		default:
			err = fmt.Errorf("unknown step")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "escape: %s: %v\n", step, err)
			os.Exit(2)
		}
	}
	fmt.Println("ready" + extra)
	time.Sleep(60 * time.Second)
}

func setuid(id int) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(id), uintptr(id), uintptr(id)); e != 0 {
		return e
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(id), uintptr(id), uintptr(id)); e != 0 {
		return e
	}
	return nil
}

// doubleFork starts a child that starts the grandchild and exits, so the
// grandchild is reparented to PID 1 of the container; it reads the
// grandchild's pid from a pipe.
func doubleFork() (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", "grandchild")
	cmd.Stdout = w
	err = cmd.Run() // the middle child: exits once the grandchild runs
	w.Close()
	if err != nil {
		return 0, err
	}
	var pid int
	_, err = fmt.Fscan(r, &pid)
	return pid, err
}

// grandchild starts itself again in a new session and exits; the new one
// ignores every signal it can and sleeps.
func grandchild() {
	if os.Getenv("ESCAPE_DETACHED") == "" {
		cmd := exec.Command("/proc/self/exe", "grandchild")
		cmd.Env = append(os.Environ(), "ESCAPE_DETACHED=1")
		cmd.Stdout = os.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			os.Exit(1)
		}
		return // exits, leaving the grandchild to PID 1
	}
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	fmt.Println(os.Getpid())
	os.Stdout.Close()
	time.Sleep(60 * time.Second)
}
