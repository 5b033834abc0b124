//go:build linux

package security

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"golang.org/x/sys/unix"
)

// cmpOp is an argument comparison, as in the OCI runtime spec.
type cmpOp uint8

const (
	opEQ cmpOp = iota
	opNE
	opLT
	opLE
	opGT
	opGE
	opMaskedEQ // (arg & value) == value2
)

// cond is one argument comparison of a rule.
type cond struct {
	arg    uint8 // 0..5
	op     cmpOp
	value  uint64
	value2 uint64
	// low32 compares only the low 32 bits, for deny rules on arguments the
	// kernel reads as 32-bit ints (ioctl's cmd): the high half is ignored by
	// the kernel, so it must not let a call slip past the rule.
	low32 bool
}

// rule is one filter rule: the syscall nr gets action act when all conds hold.
type rule struct {
	nr    uint32
	act   uint32 // SECCOMP_RET_* with its data
	conds []cond
}

// policy is a resolved profile, ready to compile.
type policy struct {
	arch       uint32 // AUDIT_ARCH_* of the only allowed architecture
	defaultAct uint32
	rules      []rule
	// maxNr is the highest syscall number known; higher ones get ENOSYS.
	maxNr uint32
	// x32Bit, when not zero, marks a second ABI that shares arch (x32 on
	// amd64): numbers with it set kill the process.
	x32Bit uint32
}

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

const (
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS
	retENOSYS      = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retEPERM       = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	maxInsns       = 4096 // BPF_MAXINSNS
)

// precedence orders actions as the kernel does when filters disagree: the
// lower, the more restrictive (KILL_PROCESS is negative as an int32).
func precedence(act uint32) int32 {
	return int32(act & unix.SECCOMP_RET_ACTION_FULL)
}

// compileABIs is compile for one policy per ABI (amd64 and i386): the
// architecture check jumps to the binary search of its ABI, and an
// architecture with none is killed.
func compileABIs(ps []policy) ([]unix.SockFilter, error) {
	if len(ps) == 1 {
		return compile(ps[0])
	}
	trees := make([][]unix.SockFilter, len(ps))
	size := 2 + 2*len(ps) // load arch, a test and a jump per ABI, kill
	for i, p := range ps {
		ranges, err := buildRanges(p)
		if err != nil {
			return nil, err
		}
		t := make([]unix.SockFilter, 0, 1+treeSize(ranges))
		t = append(t, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr))
		if trees[i], err = emitTree(t, ranges); err != nil {
			return nil, err
		}
		size += len(trees[i])
	}
	if size > maxInsns {
		return nil, fmt.Errorf("seccomp filter has %d instructions, the kernel takes at most %d", size, maxInsns)
	}
	prog := make([]unix.SockFilter, 0, size)
	prog = append(prog, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch))
	start := 2 + 2*len(ps) // where the first tree begins
	for i, p := range ps {
		prog = append(prog, jump(unix.BPF_JEQ, p.arch, 0, 1))
		ja := len(prog)
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(start - ja - 1)})
		start += len(trees[i])
	}
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, retKillProcess))
	for _, t := range trees {
		prog = append(prog, t...)
	}
	return prog, nil
}

// compile turns p into a classic BPF program for seccomp: an architecture
// check, then a binary search over the syscall number whose leaves either
// return an action or test the arguments of one syscall.
func compile(p policy) ([]unix.SockFilter, error) {
	ranges, err := buildRanges(p)
	if err != nil {
		return nil, err
	}
	prog := make([]unix.SockFilter, 0, 4+treeSize(ranges))
	prog = append(prog,
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JEQ, p.arch, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, retKillProcess),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
	)
	prog, err = emitTree(prog, ranges)
	if err != nil {
		return nil, err
	}
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("seccomp filter has %d instructions, the kernel takes at most %d", len(prog), maxInsns)
	}
	return prog, nil
}

// leaf is what the filter does for one range of syscall numbers: return act,
// or, for a single syscall with argument rules, try rules in order and
// return act when none matches.
type leaf struct {
	act   uint32
	rules []rule
}

type nrRange struct {
	lo, hi uint32 // inclusive
	leaf   leaf
}

// buildRanges covers every syscall number with a leaf, merging neighbours
// that return the same action.
func buildRanges(p policy) ([]nrRange, error) {
	for _, r := range p.rules {
		if r.nr > p.maxNr {
			return nil, fmt.Errorf("syscall %d is beyond the table (max %d)", r.nr, p.maxNr)
		}
		for _, c := range r.conds {
			if c.arg > 5 {
				return nil, fmt.Errorf("syscall %d: argument index %d out of range 0-5", r.nr, c.arg)
			}
		}
	}
	// By number (a counting sort: this runs at every container start), then
	// from the most restrictive action, so that the first rule that
	// matches wins. Both sorts keep the profile's order otherwise.
	start := make([]int, p.maxNr+2)
	for _, r := range p.rules {
		start[r.nr+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	rules := make([]rule, len(p.rules))
	fill := slices.Clone(start)
	for _, r := range p.rules {
		rules[fill[r.nr]] = r
		fill[r.nr]++
	}
	for nr := range p.maxNr + 1 {
		if group := rules[start[nr]:start[nr+1]]; len(group) > 1 {
			slices.SortStableFunc(group, func(a, b rule) int { return cmp.Compare(precedence(a.act), precedence(b.act)) })
		}
	}
	out := make([]nrRange, 0, 128)
	add := func(lo, hi uint32, l leaf) {
		if n := len(out); n > 0 && out[n-1].hi+1 == lo && len(l.rules) == 0 &&
			len(out[n-1].leaf.rules) == 0 && out[n-1].leaf.act == l.act {
			out[n-1].hi = hi
			return
		}
		out = append(out, nrRange{lo, hi, l})
	}
	next := uint32(0) // the lowest number not yet covered
	for i := 0; i < len(rules); {
		j := i + 1
		for j < len(rules) && rules[j].nr == rules[i].nr {
			j++
		}
		nr := rules[i].nr
		if next < nr {
			add(next, nr-1, leaf{act: p.defaultAct})
		}
		add(nr, nr, leafFor(rules[i:j], p.defaultAct))
		next, i = nr+1, j
	}
	if next <= p.maxNr {
		add(next, p.maxNr, leaf{act: p.defaultAct})
	}
	top := uint32(math.MaxUint32)
	if p.x32Bit != 0 {
		top = p.x32Bit - 1
	}
	if p.maxNr < top {
		add(p.maxNr+1, top, leaf{act: retENOSYS})
	}
	if p.x32Bit != 0 {
		add(p.x32Bit, math.MaxUint32, leaf{act: retKillProcess})
	}
	return out, nil
}

// leafFor turns the rules of one syscall, sorted by precedence, into a
// leaf: rules up to the first unconditional one, which gives the fallback,
// without trailing ones that cannot change the outcome.
func leafFor(rules []rule, defaultAct uint32) leaf {
	l := leaf{act: defaultAct}
	for i, r := range rules {
		if len(r.conds) == 0 {
			l.act = r.act
			rules = rules[:i]
			break
		}
	}
	for n := len(rules); n > 0 && rules[n-1].act == l.act; n-- {
		rules = rules[:n-1]
	}
	l.rules = rules
	return l
}

// emitTree emits a binary search over ranges (sorted, contiguous), with the
// syscall number in A, appending to out. All jumps are forward and local to
// a subtree.
func emitTree(out []unix.SockFilter, ranges []nrRange) ([]unix.SockFilter, error) {
	if len(ranges) == 1 {
		return emitLeaf(out, ranges[0].leaf)
	}
	m := len(ranges) / 2
	n := treeSize(ranges[:m])
	if n <= math.MaxUint8 {
		out = append(out, jump(unix.BPF_JGE, ranges[m].lo, uint8(n), 0))
	} else {
		out = append(out, jump(unix.BPF_JGE, ranges[m].lo, 0, 1),
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(n)})
	}
	out, err := emitTree(out, ranges[:m])
	if err != nil {
		return nil, err
	}
	return emitTree(out, ranges[m:])
}

// treeSize is the length of emitTree's code for ranges.
func treeSize(ranges []nrRange) int {
	if len(ranges) == 1 {
		n := 1
		for _, r := range ranges[0].leaf.rules {
			n += ruleSize(r)
		}
		return n
	}
	m := len(ranges) / 2
	left := treeSize(ranges[:m])
	node := 1
	if left > math.MaxUint8 {
		node = 2
	}
	return node + left + treeSize(ranges[m:])
}

// emitLeaf emits the rules of one syscall, each falling through to the
// next when a condition fails, and the leaf's action last.
func emitLeaf(out []unix.SockFilter, l leaf) ([]unix.SockFilter, error) {
	for _, r := range l.rules {
		var err error
		if out, err = emitRule(out, r); err != nil {
			return nil, err
		}
	}
	return append(out, stmt(unix.BPF_RET|unix.BPF_K, l.act)), nil
}

// target is where a conditional jump of a rule's code goes before offsets
// are known.
type target uint8

const (
	tNext target = iota // the next instruction
	tPass               // the end of this condition: it holds
	tFail               // the next rule: this one does not match
)

type insn struct {
	f      unix.SockFilter
	jt, jf target
}

// emitRule appends the conditions of r, ANDed, then a return of r.act.
func emitRule(out []unix.SockFilter, r rule) ([]unix.SockFilter, error) {
	size := ruleSize(r)
	if size > math.MaxUint8 {
		return nil, fmt.Errorf("syscall %d: rule with %d conditions is too long", r.nr, len(r.conds))
	}
	end := len(out) + size // the next rule
	for _, c := range r.conds {
		code, n := emitCond(c)
		for i, in := range code[:n] {
			pc := len(out)
			in.f.Jt = resolveTarget(in.jt, n-i-1, end-pc-1)
			in.f.Jf = resolveTarget(in.jf, n-i-1, end-pc-1)
			out = append(out, in.f)
		}
	}
	return append(out, stmt(unix.BPF_RET|unix.BPF_K, r.act)), nil
}

func resolveTarget(t target, pass, fail int) uint8 {
	switch t {
	case tPass:
		return uint8(pass)
	case tFail:
		return uint8(fail)
	}
	return 0
}

// ruleSize is the length of emitRule's code for r.
func ruleSize(r rule) int {
	n := 1
	for _, c := range r.conds {
		_, k := emitCond(c)
		n += k
	}
	return n
}

// emitCond emits one 64-bit comparison as two 32-bit ones (high word first),
// or only the low one for low32. Arguments are little-endian.
func emitCond(c cond) (code [6]insn, n int) {
	lo := stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArgs+8*uint32(c.arg))
	hi := stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArgs+8*uint32(c.arg)+4)
	vhi, vlo := uint32(c.value>>32), uint32(c.value)
	emit := func(ins ...insn) {
		n += copy(code[n:], ins)
	}
	j := func(op uint16, k uint32, jt, jf target) insn { return insn{jump(op, k, 0, 0), jt, jf} }
	ld := func(f unix.SockFilter) insn { return insn{f: f} }
	and := func(k uint32) insn { return ld(stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, k)) }
	high := !c.low32
	switch c.op {
	case opEQ:
		if high {
			emit(ld(hi), j(unix.BPF_JEQ, vhi, tNext, tFail))
		}
		emit(ld(lo), j(unix.BPF_JEQ, vlo, tPass, tFail))
	case opNE:
		if high {
			emit(ld(hi), j(unix.BPF_JEQ, vhi, tNext, tPass))
		}
		emit(ld(lo), j(unix.BPF_JEQ, vlo, tFail, tPass))
	case opMaskedEQ:
		if high {
			emit(ld(hi), and(uint32(c.value>>32)), j(unix.BPF_JEQ, uint32(c.value2>>32), tNext, tFail))
		}
		emit(ld(lo), and(uint32(c.value)), j(unix.BPF_JEQ, uint32(c.value2), tPass, tFail))
	case opGT, opGE:
		// hi > vhi: holds; hi < vhi: fails; equal: the low word decides.
		if high {
			emit(ld(hi), j(unix.BPF_JGT, vhi, tPass, tNext), j(unix.BPF_JEQ, vhi, tNext, tFail))
		}
		op := uint16(unix.BPF_JGT)
		if c.op == opGE {
			op = unix.BPF_JGE
		}
		emit(ld(lo), j(op, vlo, tPass, tFail))
	case opLT, opLE:
		if high {
			emit(ld(hi), j(unix.BPF_JGT, vhi, tFail, tNext), j(unix.BPF_JEQ, vhi, tNext, tPass))
		}
		op := uint16(unix.BPF_JGE)
		if c.op == opLE {
			op = unix.BPF_JGT
		}
		emit(ld(lo), j(op, vlo, tFail, tPass))
	}
	return code, n
}

func stmt(code uint16, k uint32) unix.SockFilter {
	return unix.SockFilter{Code: code, K: k}
}

func jump(op uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}
