package netaccel

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// seccompInput is struct seccomp_data as the filter reads it: each 32-bit
// word big-endian, which runBPF reads back as the native value.
func seccompInput(arch uint32, nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[offNr:], nr)
	binary.BigEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[offArgs+8*i:], uint32(a))       // low half (little-endian argument)
		binary.BigEndian.PutUint32(b[offArgs+8*i+4:], uint32(a>>32)) // high half
	}
	return b
}

func actionName(a uint32) string {
	switch a {
	case retAllow:
		return "allow"
	case retNotify:
		return "notify"
	case retKill:
		return "kill"
	case retEPERM:
		return "EPERM"
	case retEOPNOTSUPP:
		return "EOPNOTSUPP"
	}
	return fmt.Sprintf("%#x", a)
}

func TestFilter(t *testing.T) {
	prog := Filter()
	native := abis[0]
	type call struct {
		name string
		arch uint32
		nr   int
		args []uint64
		want string
	}
	var calls []call
	for _, b := range abis {
		n := "native"
		if !b.native {
			n = "compat"
		}
		calls = append(calls,
			call{n + " connect inet", b.arch, b.connect, []uint64{3, 0x1000, 16}, "notify"},
			call{n + " connect inet6", b.arch, b.connect, []uint64{3, 0x1000, 28}, "notify"},
			call{n + " connect unix 110", b.arch, b.connect, []uint64{3, 0x1000, 110}, "allow"},
			call{n + " connect unix 14", b.arch, b.connect, []uint64{3, 0x1000, 14}, "allow"},
			call{n + " connect inet 24 (untrapped length)", b.arch, b.connect, []uint64{3, 0x1000, 24}, "allow"},
			call{n + " connect high half ignored", b.arch, b.connect, []uint64{3, 0x1000, 1<<32 | 16}, "notify"},
			call{n + " bind inet", b.arch, b.bind, []uint64{3, 0x1000, 16}, "notify"},
			call{n + " bind any length", b.arch, b.bind, []uint64{3, 0x1000, 110}, "notify"},
			call{n + " listen", b.arch, b.listen, []uint64{3, 128}, "notify"},
			call{n + " sendto", b.arch, b.sendto, []uint64{3, 0x1000, 10, 0, 0, 0}, "allow"},
			call{n + " sendto nosignal", b.arch, b.sendto, []uint64{3, 0x1000, 10, unix.MSG_NOSIGNAL, 0, 0}, "allow"},
			call{n + " sendto fastopen", b.arch, b.sendto, []uint64{3, 0x1000, 10, unix.MSG_FASTOPEN | unix.MSG_NOSIGNAL, 0x2000, 16}, "EOPNOTSUPP"},
			call{n + " sendmsg", b.arch, b.sendmsg, []uint64{3, 0x1000, unix.MSG_DONTWAIT}, "allow"},
			call{n + " sendmsg fastopen", b.arch, b.sendmsg, []uint64{3, 0x1000, unix.MSG_FASTOPEN}, "EOPNOTSUPP"},
			call{n + " sendmmsg", b.arch, b.sendmmsg, []uint64{3, 0x1000, 2, 0}, "allow"},
			call{n + " sendmmsg fastopen", b.arch, b.sendmmsg, []uint64{3, 0x1000, 2, unix.MSG_FASTOPEN}, "EOPNOTSUPP"},
			call{n + " setsockopt nodelay", b.arch, b.setsockopt, []uint64{3, unix.IPPROTO_TCP, unix.TCP_NODELAY, 0x1000, 4}, "allow"},
			call{n + " setsockopt fastopen connect", b.arch, b.setsockopt, []uint64{3, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 0x1000, 4}, "EOPNOTSUPP"},
			call{n + " setsockopt 30 at SOL_SOCKET", b.arch, b.setsockopt, []uint64{3, unix.SOL_SOCKET, 30, 0x1000, 4}, "allow"},
			call{n + " io_uring_setup", b.arch, b.ioUringSetup, []uint64{8, 0x1000}, "EPERM"},
			call{n + " getpid-like (0)", b.arch, 0, nil, "allow"},
		)
		if b.socketcall >= 0 {
			calls = append(calls,
				call{n + " socketcall connect", b.arch, b.socketcall, []uint64{sysConnect, 0x1000}, "notify"},
				call{n + " socketcall bind", b.arch, b.socketcall, []uint64{sysBind, 0x1000}, "notify"},
				call{n + " socketcall listen", b.arch, b.socketcall, []uint64{sysListen, 0x1000}, "notify"},
				call{n + " socketcall socket", b.arch, b.socketcall, []uint64{1, 0x1000}, "allow"},
				call{n + " socketcall sendto", b.arch, b.socketcall, []uint64{11, 0x1000}, "allow"},
			)
		}
	}
	calls = append(calls, call{"unknown arch", unix.AUDIT_ARCH_ARM, native.connect, []uint64{3, 0x1000, 16}, "kill"})
	if runtime.GOARCH == "amd64" {
		calls = append(calls,
			call{"x32 connect", unix.AUDIT_ARCH_X86_64, x32Bit | 42, []uint64{3, 0x1000, 16}, "kill"},
			call{"x32 getpid", unix.AUDIT_ARCH_X86_64, x32Bit | 39, nil, "kill"},
		)
	}
	for _, c := range calls {
		got, err := runBPF(prog, seccompInput(c.arch, uint32(c.nr), c.args...), nil)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if actionName(got) != c.want {
			t.Errorf("%s: %s, want %s", c.name, actionName(got), c.want)
		}
	}
}

// Every syscall number of every ABI not named above is allowed: the filter
// adds no denial of its own beyond the rows of TestFilter.
func TestFilterAllowsTheRest(t *testing.T) {
	prog := Filter()
	for _, b := range abis {
		trapped := map[int]bool{b.connect: true, b.bind: true, b.listen: true, b.sendto: true, b.sendmsg: true,
			b.sendmmsg: true, b.setsockopt: true, b.ioUringSetup: true, b.socketcall: true}
		for nr := 0; nr < 1024; nr++ {
			if trapped[nr] {
				continue
			}
			got, err := runBPF(prog, seccompInput(b.arch, uint32(nr), 3, 0x1000, 16, unix.MSG_FASTOPEN, 0, 0), nil)
			if err != nil || got != retAllow {
				t.Fatalf("arch %#x nr %d: %s %v, want allow", b.arch, nr, actionName(got), err)
			}
		}
	}
}

func TestKernelVersion(t *testing.T) {
	for rel, want := range map[string][2]int{"6.18.44-fc-v1272": {6, 18}, "5.9.0": {5, 9}, "5.10": {5, 10}, "4.19.0-21-amd64": {4, 19}} {
		got, err := kernelVersion(rel)
		if err != nil || got != want {
			t.Errorf("kernelVersion(%q) = %v, %v; want %v", rel, got, err, want)
		}
	}
	if _, err := kernelVersion("garbage"); err == nil {
		t.Error("kernelVersion(garbage): no error")
	}
}
