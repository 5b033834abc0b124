package security

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// call is a syscall as the filter sees it (struct seccomp_data).
type call struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

// run interprets prog on c as the kernel would, after checking what the
// kernel's verifier checks: known opcodes, aligned loads inside
// seccomp_data, forward jumps inside the program, a return at the end.
func run(t testing.TB, prog []unix.SockFilter, c call) uint32 {
	t.Helper()
	if err := verify(prog); err != nil {
		t.Fatal(err)
	}
	var data [64]byte
	binary.LittleEndian.PutUint32(data[0:], c.nr)
	binary.LittleEndian.PutUint32(data[4:], c.arch)
	for i, a := range c.args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			a &= in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = a == in.K
			case unix.BPF_JGT:
				ok = a > in.K
			case unix.BPF_JGE:
				ok = a >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

func verify(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("program length %d", len(prog))
	}
	if prog[len(prog)-1].Code != unix.BPF_RET|unix.BPF_K {
		return fmt.Errorf("last instruction %#x is not a return", prog[len(prog)-1].Code)
	}
	for pc, in := range prog {
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K%4 != 0 || in.K >= 64 {
				return fmt.Errorf("pc %d: load at offset %d", pc, in.K)
			}
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, unix.BPF_RET | unix.BPF_K:
		case unix.BPF_JMP | unix.BPF_JA:
			if pc+1+int(in.K) >= len(prog) {
				return fmt.Errorf("pc %d: jump past the end", pc)
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			if pc+1+int(max(in.Jt, in.Jf)) >= len(prog) {
				return fmt.Errorf("pc %d: jump past the end", pc)
			}
		default:
			return fmt.Errorf("pc %d: opcode %#x", pc, in.Code)
		}
	}
	return nil
}

func nr(t testing.TB, name string) uint32 {
	t.Helper()
	n, ok := syscallNumber(name)
	if !ok {
		t.Fatalf("syscall %s not in the table", name)
	}
	return n
}

func mustFilter(t testing.TB, c Config) []unix.SockFilter {
	t.Helper()
	f, err := buildFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	return f.prog
}

// flagConfig is the Config of docker's flags --cap-add add and --cap-drop
// drop, with the default seccomp profile.
func flagConfig(t testing.TB, add, drop []string) Config {
	t.Helper()
	return mustFlags(t, add, drop, nil)
}

func actName(act uint32) string {
	switch act & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW:
		return "allow"
	case unix.SECCOMP_RET_KILL_PROCESS:
		return "kill"
	case unix.SECCOMP_RET_KILL_THREAD:
		return "kill-thread"
	case unix.SECCOMP_RET_ERRNO:
		return unix.ErrnoName(unix.Errno(act & unix.SECCOMP_RET_DATA))
	}
	return fmt.Sprintf("%#x", act)
}

func TestDefaultFilter(t *testing.T) {
	const high = 1 << 32
	def := flagConfig(t, nil, nil)
	sysAdmin := flagConfig(t, []string{"SYS_ADMIN"}, nil)
	ptrace := flagConfig(t, []string{"sys_ptrace"}, nil)
	tests := []struct {
		name string
		cfg  Config
		sc   string
		args [6]uint64
		want string
	}{
		{"read", def, "read", [6]uint64{}, "allow"},
		{"execve", def, "execve", [6]uint64{}, "allow"},
		{"mount", def, "mount", [6]uint64{}, "EPERM"},
		{"reboot", def, "reboot", [6]uint64{}, "EPERM"},
		{"keyctl", def, "keyctl", [6]uint64{}, "EPERM"},
		{"add_key", def, "add_key", [6]uint64{}, "EPERM"},
		{"kexec_load", def, "kexec_load", [6]uint64{}, "EPERM"},
		{"ioctl TCGETS", def, "ioctl", [6]uint64{1, unix.TCGETS}, "allow"},
		{"ioctl TIOCSTI", def, "ioctl", [6]uint64{1, unix.TIOCSTI}, "EPERM"},
		{"ioctl TIOCSTI high bits", def, "ioctl", [6]uint64{1, high | unix.TIOCSTI}, "EPERM"},
		{"ioctl TIOCLINUX", def, "ioctl", [6]uint64{1, unix.TIOCLINUX}, "EPERM"},
		{"ioctl TIOCSTI with SYS_ADMIN", sysAdmin, "ioctl", [6]uint64{1, unix.TIOCSTI}, "EPERM"},
		{"clone thread", def, "clone", [6]uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND | unix.CLONE_FS | unix.CLONE_FILES}, "allow"},
		{"clone NEWUSER", def, "clone", [6]uint64{unix.CLONE_NEWUSER}, "EPERM"},
		{"clone NEWNS", def, "clone", [6]uint64{unix.CLONE_NEWNS}, "EPERM"},
		{"clone NEWNS with SYS_ADMIN", sysAdmin, "clone", [6]uint64{unix.CLONE_NEWNS}, "allow"},
		{"clone NEWUSER with SYS_ADMIN", sysAdmin, "clone", [6]uint64{unix.CLONE_NEWUSER | unix.CLONE_NEWNS}, "EPERM"},
		{"clone NEWUSER high bits SYS_ADMIN", sysAdmin, "clone", [6]uint64{high | unix.CLONE_NEWUSER}, "EPERM"},
		{"unshare NEWNS", def, "unshare", [6]uint64{unix.CLONE_NEWNS}, "EPERM"},
		{"unshare NEWNS with SYS_ADMIN", sysAdmin, "unshare", [6]uint64{unix.CLONE_NEWNS}, "allow"},
		{"unshare NEWUSER with SYS_ADMIN", sysAdmin, "unshare", [6]uint64{unix.CLONE_NEWUSER}, "EPERM"},
		{"mount with SYS_ADMIN", sysAdmin, "mount", [6]uint64{}, "allow"},
		{"clone3", def, "clone3", [6]uint64{}, "ENOSYS"},
		{"clone3 with SYS_ADMIN", sysAdmin, "clone3", [6]uint64{}, "ENOSYS"},
		{"personality 0", def, "personality", [6]uint64{0}, "allow"},
		{"personality query", def, "personality", [6]uint64{0xffffffff}, "allow"},
		{"personality ADDR_NO_RANDOMIZE", def, "personality", [6]uint64{0x0040000}, "EPERM"},
		{"socket AF_UNIX", def, "socket", [6]uint64{unix.AF_UNIX}, "allow"},
		{"socket AF_INET6", def, "socket", [6]uint64{unix.AF_INET6}, "allow"},
		{"socket AF_NETLINK", def, "socket", [6]uint64{unix.AF_NETLINK}, "allow"},
		{"socket AF_VSOCK", def, "socket", [6]uint64{unix.AF_VSOCK}, "EPERM"},
		{"socket AF_ALG", def, "socket", [6]uint64{unix.AF_ALG}, "EPERM"},
		{"socket AF_UNIX high bits", def, "socket", [6]uint64{high | unix.AF_UNIX}, "EPERM"},
		{"kcmp", def, "kcmp", [6]uint64{}, "EPERM"},
		{"kcmp with SYS_PTRACE", ptrace, "kcmp", [6]uint64{}, "allow"},
		{"chroot", def, "chroot", [6]uint64{}, "allow"},
		{"chroot without SYS_CHROOT", flagConfig(t, nil, []string{"SYS_CHROOT"}), "chroot", [6]uint64{}, "EPERM"},
		{"bpf", def, "bpf", [6]uint64{}, "EPERM"},
		{"bpf with BPF", flagConfig(t, []string{"BPF"}, nil), "bpf", [6]uint64{}, "allow"},
		{"ptrace", def, "ptrace", [6]uint64{}, "allow"},
	}
	progs := map[string][]unix.SockFilter{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprint(tt.cfg.Capabilities.Bounding)
			if progs[key] == nil {
				progs[key] = mustFilter(t, tt.cfg)
			}
			got := actName(run(t, progs[key], call{nr: nr(t, tt.sc), arch: nativeArch, args: tt.args}))
			if got != tt.want {
				t.Errorf("%s%v = %s, want %s", tt.sc, tt.args, got, tt.want)
			}
		})
	}
}

func TestFilterArchAndRanges(t *testing.T) {
	prog := mustFilter(t, flagConfig(t, nil, nil))
	maxNr := maxSyscall()
	tests := []struct {
		name string
		c    call
		want string
	}{
		{"other arch", call{nr: nr(t, "read"), arch: unix.AUDIT_ARCH_ARM}, "kill"},
		{"beyond the table", call{nr: maxNr + 1, arch: nativeArch}, "ENOSYS"},
		{"far beyond the table", call{nr: 100000, arch: nativeArch}, "ENOSYS"},
		{"last number", call{nr: math.MaxUint32, arch: nativeArch}, map[bool]string{true: "kill", false: "ENOSYS"}[x32Bit != 0]},
	}
	if x32Bit != 0 {
		tests = append(tests, struct {
			name string
			c    call
			want string
		}{"x32", call{nr: x32Bit | nr(t, "getpid"), arch: nativeArch}, "kill"})
	}
	for _, tt := range tests {
		if got := actName(run(t, prog, tt.c)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
	// Every syscall the profile allows unconditionally is allowed, every
	// other one below maxNr ends in a return the profile can give.
	for n := uint32(0); n <= maxNr; n++ {
		switch got := actName(run(t, prog, call{nr: n, arch: nativeArch})); got {
		case "allow", "EPERM", "ENOSYS":
		default:
			t.Errorf("syscall %d: %s", n, got)
		}
	}
}

// The default profile lists i386 beside amd64 (docker's does), so 32-bit
// binaries run: their own numbers, the same rules and rabbitc's hardening,
// arguments compared on their low halves. A profile that lists only the
// native architecture kills them.
func TestFilterCompatABI(t *testing.T) {
	if compatArch == 0 {
		t.Skip("no compat ABI on this architecture")
	}
	prog := mustFilter(t, flagConfig(t, nil, nil))
	cnr := func(name string) uint32 {
		n, ok := compatSyscallNumber(name)
		if !ok {
			t.Fatalf("no compat syscall %s", name)
		}
		return n
	}
	newUser := uint64(unix.CLONE_NEWUSER)
	tests := []struct {
		name string
		c    call
		want string
	}{
		{"getpid", call{nr: cnr("getpid"), arch: compatArch}, "allow"},
		{"socketcall", call{nr: cnr("socketcall"), arch: compatArch}, "allow"},
		{"mmap2", call{nr: cnr("mmap2"), arch: compatArch}, "allow"},
		{"mount", call{nr: cnr("mount"), arch: compatArch}, "EPERM"},
		{"ioctl TIOCSTI", call{nr: cnr("ioctl"), arch: compatArch, args: [6]uint64{0, unix.TIOCSTI}}, "EPERM"},
		{"ioctl TIOCSTI, high half set", call{nr: cnr("ioctl"), arch: compatArch, args: [6]uint64{0, 1<<32 | unix.TIOCSTI}}, "EPERM"},
		{"clone NEWUSER", call{nr: cnr("clone"), arch: compatArch, args: [6]uint64{newUser}}, "EPERM"},
		{"clone3", call{nr: cnr("clone3"), arch: compatArch}, "ENOSYS"},
		{"beyond its table", call{nr: maxCompatSyscallNr + 1, arch: compatArch}, "ENOSYS"},
		{"native still", call{nr: nr(t, "getpid"), arch: nativeArch}, "allow"},
	}
	for _, tt := range tests {
		if got := actName(run(t, prog, tt.c)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
	path := writeProfile(t, `{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}`)
	c, err := ParseFlags(nil, nil, []string{"seccomp=" + path})
	if err != nil {
		t.Fatal(err)
	}
	native := mustFilter(t, c)
	if got := actName(run(t, native, call{nr: cnr("getpid"), arch: compatArch})); got != "kill" {
		t.Errorf("i386 getpid under a profile for x86_64 only: %s, want kill", got)
	}
	if got := actName(run(t, native, call{nr: nr(t, "getpid"), arch: nativeArch})); got != "allow" {
		t.Errorf("getpid under a profile for x86_64 only: %s, want allow", got)
	}
}

// TestCompareOps checks every operator against Go's arithmetic on values
// around 32-bit and 64-bit boundaries.
func TestCompareOps(t *testing.T) {
	values := []uint64{0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 1 << 32, 1<<32 + 1, 0xffffffff00000000, math.MaxUint64 - 1, math.MaxUint64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		values = append(values, r.Uint64(), r.Uint64()&0xffffffff, r.Uint64()&^0xffffffff)
	}
	ops := []struct {
		op   cmpOp
		name string
		eval func(a, v, v2 uint64) bool
	}{
		{opEQ, "EQ", func(a, v, _ uint64) bool { return a == v }},
		{opNE, "NE", func(a, v, _ uint64) bool { return a != v }},
		{opLT, "LT", func(a, v, _ uint64) bool { return a < v }},
		{opLE, "LE", func(a, v, _ uint64) bool { return a <= v }},
		{opGT, "GT", func(a, v, _ uint64) bool { return a > v }},
		{opGE, "GE", func(a, v, _ uint64) bool { return a >= v }},
		{opMaskedEQ, "MASKED_EQ", func(a, v, v2 uint64) bool { return a&v == v2 }},
	}
	getpid := nr(t, "getpid")
	for _, o := range ops {
		for _, v := range values {
			v2 := v & values[int(v%uint64(len(values)))]
			for _, low32 := range []bool{false, true} {
				p := policy{arch: nativeArch, defaultAct: retEPERM, maxNr: maxSyscall(), rules: []rule{
					{nr: getpid, act: unix.SECCOMP_RET_ALLOW, conds: []cond{{arg: 3, op: o.op, value: v, value2: v2, low32: low32}}},
				}}
				prog, err := compile(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range values {
					want := o.eval(a, v, v2)
					if low32 {
						want = o.eval(a&0xffffffff, v&0xffffffff, v2&0xffffffff)
					}
					got := run(t, prog, call{nr: getpid, arch: nativeArch, args: [6]uint64{3: a}}) == unix.SECCOMP_RET_ALLOW
					if got != want {
						t.Fatalf("%s low32=%v: arg %#x vs %#x (%#x): got %v, want %v", o.name, low32, a, v, v2, got, want)
					}
				}
			}
		}
	}
}

func TestCustomProfile(t *testing.T) {
	profile := `{
		"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [
			{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
			{"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
			{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
			 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
			{"names": ["setpriority"], "action": "SCMP_ACT_KILL_PROCESS",
			 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
			{"names": ["chroot"], "action": "SCMP_ACT_TRACE"},
			{"names": ["acct"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_PACCT"]}}
		]
	}`
	path := writeProfile(t, profile)
	c, err := ParseFlags(nil, nil, []string{"seccomp=" + path})
	if err != nil {
		t.Fatal(err)
	}
	prog := mustFilter(t, c)
	pacct, err := ParseFlags([]string{"SYS_PACCT"}, nil, []string{"seccomp=" + path})
	if err != nil {
		t.Fatal(err)
	}
	progPacct := mustFilter(t, pacct)
	tests := []struct {
		prog []unix.SockFilter
		sc   string
		args [6]uint64
		want string
	}{
		{prog, "mkdir", [6]uint64{}, "EACCES"},
		{prog, "mkdirat", [6]uint64{}, "EACCES"},
		{prog, "mount", [6]uint64{}, "allow"},
		{prog, "ioctl", [6]uint64{0, unix.TIOCSTI}, "allow"}, // no hardening rules in a custom profile
		{prog, "getpriority", [6]uint64{1}, "EPERM"},         // same index twice: either matches
		{prog, "getpriority", [6]uint64{2}, "EPERM"},
		{prog, "getpriority", [6]uint64{3}, "allow"},
		{prog, "setpriority", [6]uint64{1, 2}, "kill"}, // two indexes: both must match
		{prog, "setpriority", [6]uint64{1, 3}, "allow"},
		{prog, "chroot", [6]uint64{}, "ENOSYS"},
		{prog, "acct", [6]uint64{}, "allow"},
		{progPacct, "acct", [6]uint64{}, "EPERM"},
	}
	for _, tt := range tests {
		if got := actName(run(t, tt.prog, call{nr: nr(t, tt.sc), arch: nativeArch, args: tt.args})); got != tt.want {
			t.Errorf("%s%v = %s, want %s", tt.sc, tt.args, got, tt.want)
		}
	}
}

func TestBadProfiles(t *testing.T) {
	tests := []struct{ profile, want string }{
		{`{`, "decode json"},
		{`{}`, `no "defaultAction"`},
		{`{"defaultAction": "SCMP_ACT_FOO"}`, `unknown action "SCMP_ACT_FOO"`},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}`, "errnoRet 5000 out of range"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}`, "SCMP_ACT_NOTIFY is not supported"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`, "argument index 6"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}`, `unknown operator "SCMP_CMP_XX"`},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}`, "is not supported"},
	}
	for _, tt := range tests {
		path := writeProfile(t, tt.profile)
		_, err := ParseFlags(nil, nil, []string{"seccomp=" + path})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "seccomp profile "+path+": ") {
			t.Errorf("%s: got %v, want an error with %q", tt.profile, err, tt.want)
		}
	}
}

func TestSyscallTable(t *testing.T) {
	for name, want := range map[string]uint32{"read": unix.SYS_READ, "execve": unix.SYS_EXECVE, "clone3": unix.SYS_CLONE3, "newfstatat": unix.SYS_NEWFSTATAT} {
		if got, ok := syscallNumber(name); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", name, got, ok, want)
		}
	}
	if _, ok := syscallNumber("no_such_syscall"); ok {
		t.Error("no_such_syscall found")
	}
	if maxSyscall() < unix.SYS_CLONE3 {
		t.Errorf("maxSyscall %d < clone3", maxSyscall())
	}
}

func BenchmarkBuildFilter(b *testing.B) {
	c := flagConfig(b, nil, nil)
	for b.Loop() {
		if _, err := buildFilter(c); err != nil {
			b.Fatal(err)
		}
	}
}

// writeProfile writes a seccomp profile into a file of the test's own and
// returns its path, for --security-opt seccomp=PATH.
func writeProfile(t *testing.T, profile string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
