// Command compat386 is built for GOARCH=386 by the netaccel tests and run
// inside a child with the network filter: it makes the calls a 32-bit
// program (or int 0x80) makes, through socketcall(2) and through the
// direct i386 socket syscalls, on the switched socket whose descriptor it
// is given, and prints what each returned as JSON.
package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// i386 numbers: socketcall(2) and its calls, the direct socket syscalls.
const (
	sysSocketcall = 102
	sysSocket     = 359
	sysBind       = 361
	sysConnect    = 362
	sysListen     = 363
	sysSendto     = 369

	callSocket  = 1
	callBind    = 2
	callConnect = 3
	callListen  = 4

	msgFastopen = 0x20000000
)

func errname(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	switch e {
	case syscall.EOPNOTSUPP:
		return "EOPNOTSUPP"
	case syscall.ENETUNREACH:
		return "ENETUNREACH"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.EISCONN:
		return "EISCONN"
	}
	return e.Error()
}

func socketcall(call int, args ...uintptr) syscall.Errno {
	a := make([]uintptr, 6)
	copy(a, args)
	_, _, e := syscall.RawSyscall(sysSocketcall, uintptr(call), uintptr(unsafe.Pointer(&a[0])), 0)
	return e
}

func direct(nr uintptr, args ...uintptr) syscall.Errno {
	a := make([]uintptr, 6)
	copy(a, args)
	_, _, e := syscall.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return e
}

func inet4(a [4]byte, port int) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b, syscall.AF_INET)
	binary.BigEndian.PutUint16(b[2:], uint16(port))
	copy(b[4:], a[:])
	return b
}

func main() {
	if len(os.Args) < 3 {
		return // the test's probe: can this kernel run i386 programs?
	}
	fd, _ := strconv.Atoi(os.Args[1])
	port, _ := strconv.Atoi(os.Args[2])
	res := map[string]string{}
	unspec := make([]byte, 16)
	any := inet4([4]byte{}, 0)
	alias := inet4([4]byte{10, 0, 2, 2}, port)
	p := func(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
	u := uintptr(fd)

	res["socketcall.connect-unspec"] = errname(socketcall(callConnect, u, p(unspec), 16))
	res["socketcall.connect-alias"] = errname(socketcall(callConnect, u, p(alias), 16))
	res["socketcall.listen"] = errname(socketcall(callListen, u, 8))
	res["socketcall.bind"] = errname(socketcall(callBind, u, p(any), 16))
	res["direct.connect-unspec"] = errname(direct(sysConnect, u, p(unspec), 16))
	res["direct.listen"] = errname(direct(sysListen, u, 8))
	res["direct.bind"] = errname(direct(sysBind, u, p(any), 16))
	res["direct.sendto-fastopen"] = errname(direct(sysSendto, u, p(alias), 1, msgFastopen, p(alias), 16))

	// A 32-bit socket of its own is never switched: no route out.
	r, _, e := syscall.RawSyscall(sysSocket, syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if e != 0 {
		res["socket"] = errname(e)
	} else {
		res["own.connect-alias"] = errname(direct(sysConnect, r, p(alias), 16))
	}
	a := make([]uintptr, 3)
	a[0], a[1], a[2] = syscall.AF_INET, syscall.SOCK_STREAM, 0
	r2, _, e := syscall.RawSyscall(sysSocketcall, callSocket, uintptr(unsafe.Pointer(&a[0])), 0)
	if e == 0 {
		res["own.socketcall.connect-alias"] = errname(socketcall(callConnect, r2, p(alias), 16))
	}
	json.NewEncoder(os.Stdout).Encode(res)
}
