package security

import (
	"unsafe"

	"encoding/json"
	"errors"
	"fmt"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// SeccompUnconfined is the --security-opt seccomp= value that turns seccomp
// off (a Config with neither Seccomp nor Default).
const SeccompUnconfined = "unconfined"

// filter is a compiled seccomp program and the flags to load it with.
type filter struct {
	prog  []unix.SockFilter
	flags uintptr // SECCOMP_FILTER_FLAG_*, TSYNC included
}

// bytes is the program as the kernel reads it, for the spec.
func (f *filter) bytes() []byte {
	if len(f.prog) == 0 {
		return nil
	}
	n := len(f.prog) * int(unsafe.Sizeof(f.prog[0]))
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&f.prog[0])), n)...)
}

// filterFromBytes is the inverse of bytes.
func filterFromBytes(b []byte, flags uintptr) (*filter, error) {
	size := int(unsafe.Sizeof(unix.SockFilter{}))
	if len(b)%size != 0 || len(b)/size > 4096 {
		return nil, fmt.Errorf("load seccomp filter: malformed program of %d bytes", len(b))
	}
	prog := make([]unix.SockFilter, len(b)/size)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(b)), b)
	return &filter{prog: prog, flags: flags}, nil
}

// buildFilter compiles the profile c asks for: Seccomp as given, or, with
// Default, docker's default profile resolved against the bounding set, with
// rabbitc's hardening rules. It returns a nil filter for unconfined.
func buildFilter(c Config) (*filter, error) {
	prof := c.Seccomp
	var err error
	if prof == nil && c.Default {
		prof, err = defaultProfile(c.Capabilities)
	}
	var f *filter
	if err == nil {
		f, err = compileProfile(prof, c.Default)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.profileName(), err)
	}
	return f, nil
}

func (c Config) profileName() string {
	if c.Default {
		return "default seccomp profile"
	}
	return "seccomp profile"
}

// compileProfile compiles prof, plus rabbitc's hardening rules when
// hardening is set. A nil prof is unconfined: no filter.
func compileProfile(prof *specs.LinuxSeccomp, hardening bool) (*filter, error) {
	if prof == nil {
		return nil, nil
	}
	abis := []abi{nativeABI}
	if compatArch != 0 && listsArch(prof, compatArchName) {
		abis = append(abis, compatABI)
	}
	var ps []policy
	var flags uintptr
	for _, a := range abis {
		p, f, err := resolve(prof, a)
		if err != nil {
			return nil, err
		}
		if hardening {
			p.rules = append(p.rules, hardeningRules(a)...) // order between precedence levels does not matter
		}
		ps, flags = append(ps, p), f
	}
	prog, err := compileABIs(ps)
	if err != nil {
		return nil, err
	}
	return &filter{prog: prog, flags: flags | unix.SECCOMP_FILTER_FLAG_TSYNC}, nil
}

// specFor is the runtime spec moby/profiles resolves a profile's
// capability includes and excludes against: only the bounding set counts.
func specFor(caps *specs.LinuxCapabilities) *specs.Spec {
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	return &specs.Spec{Process: &specs.Process{Capabilities: caps}}
}

// defaultProfile is docker's default profile for the capability set caps.
func defaultProfile(caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	return seccomp.GetDefaultProfile(specFor(caps))
}

// abi is one system call ABI the filter has a branch for: its
// seccomp_data.arch and its syscall table.
type abi struct {
	arch   uint32
	number func(name string) (uint32, bool)
	maxNr  uint32
	x32Bit uint32 // see policy.x32Bit
	// low32 compares only the low halves of arguments, as libseccomp does
	// for a 32-bit ABI (the kernel zero-extends its registers).
	low32 bool
}

var (
	nativeABI = abi{arch: nativeArch, number: syscallNumber, maxNr: maxSyscallNr, x32Bit: x32Bit}
	compatABI = abi{arch: compatArch, number: compatSyscallNumber, maxNr: maxCompatSyscallNr, low32: true}
)

// listsArch tells whether a profile's architectures name arch. A profile
// that names none is for the native ABI alone, as with libseccomp.
func listsArch(prof *specs.LinuxSeccomp, arch string) bool {
	for _, a := range prof.Architectures {
		if string(a) == arch {
			return true
		}
	}
	return false
}

// loadProfile decodes a docker-format JSON profile and resolves its
// includes and excludes as docker does.
func loadProfile(b []byte, caps *specs.LinuxCapabilities) (*specs.LinuxSeccomp, error) {
	var probe seccomp.Seccomp
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	if probe.DefaultAction == "" {
		return nil, errors.New(`no "defaultAction" (use --security-opt seccomp=unconfined to run without seccomp)`)
	}
	return seccomp.LoadProfile(string(b), specFor(caps))
}

// hardeningRules are the rules rabbitc adds to docker's default profile.
// They are more restrictive than its allow rules for the same syscalls, so
// they win whatever the capability set enables.
func hardeningRules(a abi) []rule {
	newUser := cond{arg: 0, op: opMaskedEQ, value: unix.CLONE_NEWUSER, value2: unix.CLONE_NEWUSER, low32: true}
	clone, _ := a.number("clone")
	unshare, _ := a.number("unshare")
	clone3, _ := a.number("clone3")
	ioctl, _ := a.number("ioctl")
	return []rule{
		// Typing into the terminal (CVE-2017-5226) and the console ioctls.
		{nr: ioctl, act: retEPERM, conds: []cond{{arg: 1, op: opEQ, value: unix.TIOCSTI, low32: true}}},
		{nr: ioctl, act: retEPERM, conds: []cond{{arg: 1, op: opEQ, value: unix.TIOCLINUX, low32: true}}},
		// Nested user namespaces. clone3 passes its flags in memory the
		// filter cannot read: ENOSYS makes libc fall back to clone.
		{nr: clone, act: retEPERM, conds: []cond{newUser}},
		{nr: unshare, act: retEPERM, conds: []cond{newUser}},
		{nr: clone3, act: retENOSYS},
	}
}

// resolve turns a runtime-spec profile into a policy for one ABI, with
// runc's semantics: names the ABI's table does not know are skipped, and a
// rule that compares one argument more than once becomes one rule per
// comparison.
func resolve(prof *specs.LinuxSeccomp, a abi) (policy, uintptr, error) {
	p := policy{arch: a.arch, maxNr: a.maxNr, x32Bit: a.x32Bit}
	if prof == nil {
		return p, 0, errors.New(`no "defaultAction" (use --security-opt seccomp=unconfined to run without seccomp)`)
	}
	var err error
	if p.defaultAct, err = action(prof.DefaultAction, prof.DefaultErrnoRet); err != nil {
		return p, 0, fmt.Errorf("defaultAction: %w", err)
	}
	n := 0
	for _, sc := range prof.Syscalls {
		n += len(sc.Names)
	}
	p.rules = make([]rule, 0, n+8)
	var flags uintptr
	for _, f := range prof.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		default:
			return p, 0, fmt.Errorf("flag %q is not supported (use SECCOMP_FILTER_FLAG_LOG or SECCOMP_FILTER_FLAG_SPEC_ALLOW)", f)
		}
	}
	for i, sc := range prof.Syscalls {
		act, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return p, 0, fmt.Errorf("syscalls[%d] %v: %w", i, sc.Names, err)
		}
		conds, perIndex, err := conditions(sc.Args)
		if err != nil {
			return p, 0, fmt.Errorf("syscalls[%d] %v: %w", i, sc.Names, err)
		}
		if a.low32 {
			for j := range conds {
				conds[j].low32 = true
			}
		}
		for _, name := range sc.Names {
			nr, ok := a.number(name)
			if !ok {
				continue
			}
			if perIndex {
				for _, c := range conds {
					p.rules = append(p.rules, rule{nr: nr, act: act, conds: []cond{c}})
				}
				continue
			}
			p.rules = append(p.rules, rule{nr: nr, act: act, conds: conds})
		}
	}
	return p, flags, nil
}

// conditions converts the argument comparisons of one rule. perIndex
// reports that an argument is compared more than once, which runc (and so
// docker) reads as "any of these".
func conditions(args []specs.LinuxSeccompArg) (conds []cond, perIndex bool, err error) {
	var seen [6]bool
	for _, a := range args {
		if a.Index > 5 {
			return nil, false, fmt.Errorf("argument index %d out of range 0-5", a.Index)
		}
		op, ok := ops[a.Op]
		if !ok {
			return nil, false, fmt.Errorf("unknown operator %q", a.Op)
		}
		perIndex = perIndex || seen[a.Index]
		seen[a.Index] = true
		conds = append(conds, cond{arg: uint8(a.Index), op: op, value: a.Value, value2: a.ValueTwo})
	}
	return conds, perIndex, nil
}

var ops = map[specs.LinuxSeccompOperator]cmpOp{
	specs.OpEqualTo:      opEQ,
	specs.OpNotEqual:     opNE,
	specs.OpLessThan:     opLT,
	specs.OpLessEqual:    opLE,
	specs.OpGreaterThan:  opGT,
	specs.OpGreaterEqual: opGE,
	specs.OpMaskedEqual:  opMaskedEQ,
}

// action converts a profile action. ERRNO defaults to EPERM; TRACE, which
// needs a tracer rabbitc does not provide, returns its errno or ENOSYS, as
// the kernel does for an untraced process.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	errno := func(def unix.Errno) (uint32, error) {
		e := uint(def)
		if errnoRet != nil {
			e = *errnoRet
		}
		if e > 4095 {
			return 0, fmt.Errorf("errnoRet %d out of range 0-4095", e)
		}
		return unix.SECCOMP_RET_ERRNO | uint32(e), nil
	}
	switch a {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno:
		return errno(unix.EPERM)
	case specs.ActTrace:
		return errno(unix.ENOSYS)
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, errors.New("action SCMP_ACT_NOTIFY is not supported (rabbitc has no seccomp agent)")
	}
	return 0, fmt.Errorf("unknown action %q", a)
}
