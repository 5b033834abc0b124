package netaccel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// runBPF interprets a classic BPF program over pkt, with the subset of
// instructions this package emits (absolute loads, conditional jumps on
// constants, returns). Loads beyond pkt, and negative offsets (the socket
// filter's ancillary and network-header loads), go to ext; a load nothing
// answers fails, as the kernel drops the packet then.
func runBPF(prog []unix.SockFilter, pkt []byte, ext func(k uint32, size int) (uint32, bool)) (uint32, error) {
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, unix.BPF_LD | unix.BPF_B | unix.BPF_ABS:
			size := map[uint16]int{unix.BPF_W: 4, unix.BPF_H: 2, unix.BPF_B: 1}[in.Code&0x18]
			if int32(in.K) >= 0 && int(in.K)+size <= len(pkt) {
				b := pkt[in.K : int(in.K)+size]
				switch size {
				case 4:
					acc = binary.BigEndian.Uint32(b)
				case 2:
					acc = uint32(binary.BigEndian.Uint16(b))
				default:
					acc = uint32(b[0])
				}
				continue
			}
			v, ok := uint32(0), false
			if ext != nil {
				v, ok = ext(in.K, size)
			}
			if !ok {
				return 0, fmt.Errorf("pc %d: load of %d bytes at %#x out of range", pc, size, in.K)
			}
			acc = v
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var cond bool
			switch in.Code & 0xf0 {
			case unix.BPF_JEQ:
				cond = acc == in.K
			case unix.BPF_JSET:
				cond = acc&in.K != 0
			case unix.BPF_JGT:
				cond = acc > in.K
			case unix.BPF_JGE:
				cond = acc >= in.K
			}
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_RET | unix.BPF_K:
			return in.K, nil
		default:
			return 0, fmt.Errorf("pc %d: instruction %#x not interpreted", pc, in.Code)
		}
	}
	return 0, fmt.Errorf("ran off the end of the program")
}
