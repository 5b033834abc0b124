package nsenter

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
)

// EntrySymbol is the entry point's symbol, for the linker's -E flag.
const EntrySymbol = "github.com/rabbitc/rabbitc/nsenter.entry"

// BuildFlag is what every build of rabbitc passes to the linker
// (go build -ldflags='-s -w -E ...'); a binary built without it refuses exec.
const BuildFlag = "-E " + EntrySymbol

// PidFD is the descriptor at which the exec stage inherits the pidfd of the
// container's init, whose namespaces it joins.
const PidFD = 4

// Written by the entry point before the Go runtime starts, read only after.
var (
	linked    uint32 // the entry point ran: the binary was linked with BuildFlag
	entered   uint32 // argv was an exec request
	failStep  uint32 // the step that failed (step*), 0 if none
	failErrno uint32 // its errno
	status    int32  // the forked child's wait status, in the parent
	watched   uint32 // the watchdog's wait ended: rabbitc is gone, init was killed
	watchBuf  [8]byte
	watchPoll [2]uint32 // struct pollfd
	watchTime [2]int64  // struct timespec, for arm64's ppoll

	planMode   uint32   // argv asked for a plan (PlanArgs)
	planPeek   [8]byte  // the first bytes of the plan's packet
	planFail   [16]byte // the failure record the child sends
	planDenied uint32   // 1 + the first execve attempt denied with EACCES, 0 if none
)

// Watched tells, in the watchdog (`rabbitc init watchdog`, with the pidfd
// of the container's init at descriptor 3), that the entry point has waited
// until rabbitc died, killed init and waited for it: the watchdog's Go code
// is only left to remove the state. False in a binary built without
// BuildFlag, where Go code must do all of it.
func Watched() bool { return watched != 0 }

// Steps of the entry point, as stored in failStep.
const (
	stepArgs  = 1 // argv[3] is not a decimal number
	stepPrctl = 2 // prctl(PR_SET_DUMPABLE, 0)
	stepSetns = 3 // setns(PidFD, flags)
	stepFork  = 4 // clone(SIGCHLD)
)

// entry is the ELF entry point (entry_*.s).
func entry()

// Linked tells whether this binary was linked with BuildFlag, so that its
// entry point runs before the runtime.
func Linked() bool { return linked != 0 }

// Args is the argv, after the program's path, that makes the entry point
// join the namespaces given by flags (CLONE_NEW*) of the process whose pidfd
// is at PidFD, and fork. Go code then sees os.Args[1:3] == "init", "exec".
func Args(flags uintptr) []string {
	return []string{"init", "exec", strconv.FormatUint(uint64(flags), 10)}
}

// Joined tells, in a process started with Args, whether the entry point
// joined the namespaces and forked: nil in the child, running inside them.
// An error means the process is the one that was started, unforked.
func Joined() error {
	if linked == 0 || entered == 0 {
		return fmt.Errorf("the entry point did not run: rabbitc was built without %s (build it with make build)", BuildFlag)
	}
	errno := syscall.Errno(failErrno)
	switch failStep {
	case 0:
		return nil
	case stepArgs:
		return errors.New("join the container's namespaces: bad flags in argv")
	case stepPrctl:
		return fmt.Errorf("prctl PR_SET_DUMPABLE: %w", errno)
	case stepSetns:
		if errno == syscall.EINVAL {
			return fmt.Errorf("join the container's namespaces: setns: %w (rabbitc exec needs Linux 5.8 or later, for setns on a pidfd)", errno)
		}
		return fmt.Errorf("join the container's namespaces: setns: %w", errno)
	case stepFork:
		return fmt.Errorf("fork into the container's PID namespace: %w", errno)
	}
	return fmt.Errorf("join the container's namespaces: step %d: %w", failStep, errno)
}
