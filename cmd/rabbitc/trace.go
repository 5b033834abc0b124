package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// envTrace carries the parent's start time to the stages when tracing.
const envTrace = "_RABBITC_TRACE"

// tracer prints stage timestamps to stderr when RABBITC_TRACE is set, as
// "rabbitc-trace: STAGE MICROSECONDS" counted from the parent's start, for
// the start-up breakdown in bench/. The stages report too (sandbox:...,
// init:...), on the same clock.
type tracer struct {
	on    bool
	start time.Time
}

func newTracer(start time.Time) *tracer {
	return &tracer{on: os.Getenv("RABBITC_TRACE") != "", start: start}
}

// stageTracer is a stage's tracer, on the parent's clock.
func stageTracer() *tracer {
	ns, err := strconv.ParseInt(os.Getenv(envTrace), 10, 64)
	if err != nil {
		return &tracer{}
	}
	return &tracer{on: true, start: time.Unix(0, ns)}
}

func (t *tracer) mark(stage string) {
	if t.on {
		fmt.Fprintf(os.Stderr, "rabbitc-trace: %s %d\n", stage, time.Since(t.start).Microseconds())
	}
}

// cpu prints the CPU time, user plus system, that this process (who is
// syscall.RUSAGE_SELF) or its reaped children (RUSAGE_CHILDREN) used so far,
// as "rabbitc-trace: cpu:NAME MICROSECONDS".
func (t *tracer) cpu(name string, who int) {
	if !t.on {
		return
	}
	var ru syscall.Rusage
	if syscall.Getrusage(who, &ru) != nil {
		return
	}
	us := ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
	fmt.Fprintf(os.Stderr, "rabbitc-trace: cpu:%s %d\n", name, us)
}
