package nsenter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// A Plan is what the entry point's child runs, before any Go runtime
// starts, when the exec stage was started with PlanArgs: a list of system
// calls, made in order with the arguments given, then (normally) execve.
// The caller, whose Go code already runs, computes every value; the child
// only makes the calls. That spares the exec stage a second Go runtime's
// start (5-9 ms where a page fault costs ~20 us: most of an exec).
//
// The child reads the plan as one packet on the sync channel (SyncFD), into
// memory it maps for it, adds its address to every pointer the plan lists
// (Ptr values and the pointers inside its data) and makes the calls. A call
// that fails, unless its errno is one it accepts (OK), ends the child: it
// sends a failure record (ParseFailure) on the channel and exits with 125.
//
// Layout (little-endian 64-bit words): magic, length, number of
// relocations, number of records, 0; the relocations (offsets of words to
// which the plan's address is added); the records, 10 words each: number,
// 6 arguments, flags, store offset, accepted errnos (a bit per errno below
// 64); then the data.
type Plan struct {
	recs   []record
	data   []byte
	relocs []int   // offsets in data of words that hold data offsets (pointers)
	execve uintptr // its number, if not this architecture's (tests under qemu)
}

type record struct {
	nr    uintptr
	args  [6]Arg
	flags uint64
	store *Arg    // where the result goes (4 bytes) in the data, if not nil
	toArg *[2]int // or which later step's argument it becomes
	okerr uint64
}

// Arg is a system call's argument: a value, or a pointer into the plan's
// data.
type Arg struct {
	v   uint64
	ptr bool
}

// Val is an argument given by value.
func Val(v uintptr) Arg { return Arg{v: uint64(v)} }

// Add is a pointer n bytes further.
func (a Arg) Add(n int) Arg { return Arg{v: a.v + uint64(n), ptr: a.ptr} }

// Step is a record of the plan, by index.
type Step int

// Record flags, as the entry point tests them (entry_*.s).
const (
	flagExecvp   = 1 // ENOENT and ENOTDIR go on to the next record, EACCES too, remembered
	flagNotFound = 2 // no call: fail with the first EACCES remembered, else ENOENT
)

const (
	planMagic  = 0x316e616c70636272 // "rbcplan1"
	goMarker   = 0x2121216f672d6362 // "bc-go!!!"
	failMagic  = 0x4c4941464e414c50 // "PLANFAIL"
	planHeader = 5 * 8
	recordSize = 10 * 8

	// MaxPlan bounds an encoded plan: one packet on a socket, which its
	// send buffer (net.core.wmem_default, 208 kB by default) must hold.
	MaxPlan = 128 << 10
)

// StepTransport is the step number of a failure record about the plan
// itself (reading it, mapping memory for it, a malformed plan).
const StepTransport = Step(-1)

// Data copies b into the plan's data, 8-byte aligned, and points to it.
func (p *Plan) Data(b []byte) Arg {
	off := len(p.data)
	p.data = append(p.data, b...)
	for len(p.data)%8 != 0 {
		p.data = append(p.data, 0)
	}
	return Arg{v: uint64(off), ptr: true}
}

// Zero reserves n zero bytes and points to them.
func (p *Plan) Zero(n int) Arg { return p.Data(make([]byte, n)) }

// String is a NUL-terminated copy of s.
func (p *Plan) String(s string) Arg { return p.Data(append([]byte(s), 0)) }

// Strings is a NULL-terminated array of pointers to copies of ss: an argv
// or envp.
func (p *Plan) Strings(ss []string) Arg {
	strs := make([]Arg, len(ss))
	for i, s := range ss {
		strs[i] = p.String(s)
	}
	arr := p.Zero(8 * (len(ss) + 1))
	for i, s := range strs {
		p.SetPointer(arr.Add(8*i), s)
	}
	return arr
}

// SetPointer stores, at data pointer at, the pointer to.
func (p *Plan) SetPointer(at, to Arg) {
	if !at.ptr || !to.ptr {
		panic("nsenter: SetPointer with a value")
	}
	binary.LittleEndian.PutUint64(p.data[at.v:], to.v)
	p.relocs = append(p.relocs, int(at.v))
}

// SetWord stores v, 8 bytes, at data pointer at.
func (p *Plan) SetWord(at Arg, v uint64) { binary.LittleEndian.PutUint64(p.data[at.v:], v) }

// Syscall appends the call nr(args...).
func (p *Plan) Syscall(nr uintptr, args ...Arg) Step {
	if len(args) > 6 {
		panic("nsenter: a system call has 6 arguments at most")
	}
	r := record{nr: nr}
	copy(r.args[:], args)
	p.recs = append(p.recs, r)
	return Step(len(p.recs) - 1)
}

// OK makes errnos, all below 64, count as success for step s.
func (p *Plan) OK(s Step, errnos ...syscall.Errno) {
	for _, e := range errnos {
		if e >= 64 {
			panic("nsenter: OK with an errno above 63")
		}
		p.recs[s].okerr |= 1 << e
	}
}

// StoreResult stores step s's result (4 bytes) at data pointer at.
func (p *Plan) StoreResult(s Step, at Arg) {
	if !at.ptr {
		panic("nsenter: StoreResult to a value")
	}
	p.recs[s].store = &at
}

// ResultToArg makes step s's result argument i of the later step to.
func (p *Plan) ResultToArg(s, to Step, i int) {
	if to <= s {
		panic("nsenter: ResultToArg to an earlier step")
	}
	p.recs[s].toArg = &[2]int{int(to), i}
}

// Execvp appends the attempts of execvp(3): execve(paths[i], argv, envp)
// in order, on to the next when one fails with ENOENT, ENOTDIR or EACCES,
// and, when every one failed so, a failure record of the first that failed
// with EACCES (exit status 126), else of the last step with ENOENT (127).
// It returns the first and the last step.
func (p *Plan) Execvp(paths []string, argv, envp Arg) (first, last Step) {
	first = Step(len(p.recs))
	nr := uintptr(syscall.SYS_EXECVE)
	if p.execve != 0 {
		nr = p.execve
	}
	for _, path := range paths {
		s := p.Syscall(nr, p.String(path), argv, envp)
		p.recs[s].flags |= flagExecvp
	}
	p.recs = append(p.recs, record{flags: flagNotFound})
	return first, Step(len(p.recs) - 1)
}

// Encode lays the plan out as the entry point reads it.
func (p *Plan) Encode() ([]byte, error) {
	nrel := len(p.relocs)
	for _, r := range p.recs {
		for _, a := range r.args {
			if a.ptr {
				nrel++
			}
		}
	}
	recBase := planHeader + 8*nrel
	dataBase := recBase + recordSize*len(p.recs)
	size := dataBase + len(p.data)
	if size > MaxPlan {
		return nil, fmt.Errorf("the exec plan is %d bytes, more than %d", size, MaxPlan)
	}
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint64(b[0:], planMagic)
	le.PutUint64(b[8:], uint64(size))
	le.PutUint64(b[16:], uint64(nrel))
	le.PutUint64(b[24:], uint64(len(p.recs)))
	copy(b[dataBase:], p.data)
	rel := planHeader
	reloc := func(off int) {
		le.PutUint64(b[rel:], uint64(off))
		rel += 8
	}
	for _, off := range p.relocs {
		le.PutUint64(b[dataBase+off:], le.Uint64(b[dataBase+off:])+uint64(dataBase))
		reloc(dataBase + off)
	}
	argOff := func(s Step, i int) int { return recBase + recordSize*int(s) + 8*(1+i) }
	for i, r := range p.recs {
		w := b[recBase+recordSize*i:]
		le.PutUint64(w[0:], uint64(r.nr))
		for j, a := range r.args {
			v := a.v
			if a.ptr {
				v += uint64(dataBase)
				reloc(argOff(Step(i), j))
			}
			le.PutUint64(w[8*(1+j):], v)
		}
		le.PutUint64(w[56:], r.flags)
		switch {
		case r.store != nil:
			le.PutUint64(w[64:], uint64(dataBase)+r.store.v)
		case r.toArg != nil:
			le.PutUint64(w[64:], uint64(argOff(Step(r.toArg[0]), r.toArg[1])))
		}
		le.PutUint64(w[72:], r.okerr)
	}
	return b, nil
}

// GoMarker is the packet that, sent instead of a plan, makes the child
// start the Go runtime (execMain's way, for what a plan cannot express);
// the spec follows on the channel.
func GoMarker() []byte { return binary.LittleEndian.AppendUint64(nil, goMarker) }

// ParseFailure reads a failure record the child sent: the step that failed
// (StepTransport for the plan itself) and its errno. ok is false if b is
// not one.
func ParseFailure(b []byte) (s Step, errno syscall.Errno, ok bool) {
	if len(b) != 16 || binary.LittleEndian.Uint64(b) != failMagic {
		return 0, 0, false
	}
	return Step(int32(binary.LittleEndian.Uint32(b[8:]))), syscall.Errno(binary.LittleEndian.Uint32(b[12:])), true
}

// IsFailure tells whether packet b, or its first bytes, is a failure record.
func IsFailure(b []byte) bool {
	return len(b) >= 8 && binary.LittleEndian.Uint64(b) == failMagic
}

// ErrTransport is the error of a failure record about the plan itself.
func ErrTransport(errno syscall.Errno) error {
	if errno == syscall.EINVAL {
		return errors.New("exec stage: malformed plan")
	}
	return fmt.Errorf("exec stage: read the plan: %w", errno)
}

// PlanArgs is Args for a stage whose child runs a Plan (or, after
// GoMarker, starts the Go runtime) instead of starting the runtime.
func PlanArgs(flags uintptr) []string { return append(Args(flags), "plan") }
