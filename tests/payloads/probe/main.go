// Command probe is the attacker-shaped payload of the integration tests. Each
// subcommand tries one thing from inside the container and prints what
// happened, one "key: value" line per attempt, so the tests can decide.
//
//	probe status              capabilities, no_new_privs, seccomp, session, tty
//	probe seccomp             system calls the default profile denies
//	probe tiocsti TEXT        push TEXT and a newline into the input queue of fd 0's terminal
//	probe keyring             the session keyring's serial
//	probe exewrite            open every /proc/*/exe for writing, write if it opens
//	probe dial ADDR           TCP connect (3 s timeout) and print the first line read
//	probe connect IP:PORT     a blocking IPv4 connect, as C programs make it: the socket's
//	                          local and peer addresses, then the first line read
//	probe accept IP:PORT N DELAY [reuseport]
//	                          after DELAY, an IPv4 server (socket, bind, listen) prints its
//	                          local address, then for each of N clients (0: forever) prints
//	                          and sends "peer: ADDR", the address it sees the client at;
//	                          with reuseport, SO_REUSEPORT is set before the bind
//	probe ifaces              network interfaces with MTU, flags and addresses
//	probe stat PATH...        file type, device numbers, mode and link target
//	probe masked PATH...      entries of a directory or bytes of a file
//	probe rewrite PATH...     write a file's own content back into it
//	probe tree DIR            every entry under DIR with the metadata an image sets
//	probe segv                die from SIGSEGV with the default action
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe status|seccomp|tiocsti|keyring|exewrite|dial|ifaces|stat|masked|rewrite|tree|segv")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "status":
		status()
	case "seccomp":
		seccomp()
	case "tiocsti":
		tiocsti(strings.Join(args, " ") + "\n")
	case "keyring":
		keyring()
	case "exewrite":
		exewrite()
	case "dial":
		os.Exit(dial(args[0]))
	case "connect":
		os.Exit(connectAddrs(args[0]))
	case "accept":
		os.Exit(acceptPeers(args))
	case "relisten":
		os.Exit(relisten(args))
	case "ifaces":
		ifaces()
	case "stat":
		statPaths(args)
	case "masked":
		masked(args)
	case "rewrite":
		rewrite(args)
	case "tree":
		os.Exit(tree(args[0]))
	case "segv":
		segv()
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown subcommand", os.Args[1])
		os.Exit(2)
	}
}

// errName prints an errno by its symbolic name, "ok" for success.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if !errors.As(err, &e) {
		return err.Error()
	}
	names := map[syscall.Errno]string{
		syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO",
		syscall.EBADF: "EBADF", syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY",
		syscall.EINVAL: "EINVAL", syscall.ENOTTY: "ENOTTY", syscall.ETXTBSY: "ETXTBSY", syscall.EROFS: "EROFS",
		syscall.ENOSYS: "ENOSYS", syscall.ENOKEY: "ENOKEY", syscall.EOPNOTSUPP: "EOPNOTSUPP",
		syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH",
		syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EINPROGRESS: "EINPROGRESS",
		syscall.ENOSPC: "ENOSPC", syscall.EEXIST: "EEXIST", syscall.ENOTDIR: "ENOTDIR", syscall.EISDIR: "EISDIR",
		syscall.ELOOP: "ELOOP", syscall.EAGAIN: "EAGAIN", syscall.ESRCH: "ESRCH", syscall.EXDEV: "EXDEV",
	}
	if n, ok := names[e]; ok {
		return n
	}
	return fmt.Sprintf("errno%d", int(e))
}

func status() {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Println("status:", err)
		os.Exit(1)
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters":
			fmt.Printf("%s: %s\n", k, strings.Join(strings.Fields(v), " "))
		}
	}
	nnp, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, 39 /* PR_GET_NO_NEW_PRIVS */, 0, 0, 0, 0, 0)
	fmt.Printf("prctl_no_new_privs: %d %s\n", nnp, errName(errnoOrNil(e)))
	sid, _, _ := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	fmt.Printf("pid: %d\nsid: %d\npgid: %d\n", os.Getpid(), sid, syscall.Getpgrp())
	fd, err := syscall.Open("/dev/tty", syscall.O_RDWR|syscall.O_NOCTTY, 0)
	if err == nil {
		syscall.Close(fd)
	}
	fmt.Printf("ctty: %s\n", errName(err))
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// seccomp tries calls that docker's default profile denies but that an
// unconfined container root gets through (or fails with another errno).
func seccomp() {
	keySpecSessionKeyring := ^uintptr(2) // -3
	_, _, e := syscall.RawSyscall(syscall.SYS_KEYCTL, 0 /* KEYCTL_GET_KEYRING_ID */, keySpecSessionKeyring, 0)
	fmt.Println("keyctl:", errName(errnoOrNil(e)))
	_, _, e = syscall.RawSyscall(syscall.SYS_NFSSERVCTL, 0, 0, 0)
	fmt.Println("nfsservctl:", errName(errnoOrNil(e)))
	_, _, e = syscall.RawSyscall6(syscall.SYS_GET_MEMPOLICY, 0, 0, 0, 0, 0, 0)
	fmt.Println("get_mempolicy:", errName(errnoOrNil(e)))
	// TIOCLINUX subcode 7 (TIOCL_GETSHIFTSTATE) on stdin: ENOTTY/EINVAL on a pty.
	sub := byte(7)
	_, _, e = syscall.Syscall(syscall.SYS_IOCTL, 0, 0x541C /* TIOCLINUX */, uintptr(unsafe.Pointer(&sub)))
	fmt.Println("tioclinux:", errName(errnoOrNil(e)))
}

func tiocsti(text string) {
	var err error
	for i := 0; i < len(text); i++ {
		c := text[i]
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		if e != 0 {
			err = e
			break
		}
	}
	fmt.Println("tiocsti:", errName(err))
}

func keyring() {
	id, _, e := syscall.RawSyscall(syscall.SYS_KEYCTL, 0, ^uintptr(2) /* -3: KEY_SPEC_SESSION_KEYRING */, 0)
	if e != 0 {
		fmt.Println("keyring:", errName(e))
		return
	}
	fmt.Println("keyring:", int32(id))
}

// exewrite tries to reach the binary of every process it can see through
// /proc/PID/exe and write into it: opened for writing directly, and through
// a read-only or O_PATH descriptor reopened through /proc/self/fd (the
// CVE-2019-5736 technique). Whatever opens gets a marker written into it,
// so a successful attack changes the file.
//
// A running binary refuses a write open with ETXTBSY whatever rabbitc does,
// so the "trunc" opens add O_TRUNC: the kernel checks a read-only mount
// (EROFS) before it checks for a busy text (ETXTBSY), so they tell
// rabbitc's read-only bind from the kernel's own guard. (A truncation
// happens only after both checks passed, when the write would have too.)
// For a memfd it prints the seals (F_GET_SEALS works on a read-only
// descriptor): a write would meet the busy text before them, too.
func exewrite() {
	paths, _ := filepath.Glob("/proc/[0-9]*/exe")
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/exe")
	paths = append(paths, tasks...)
	opened := 0
	for _, p := range paths {
		target, _ := os.Readlink(p)
		for _, how := range []string{"wronly", "rdwr", "trunc", "opath", "reopen-trunc"} {
			fd, err := openExe(p, how)
			if err == nil {
				_, err = syscall.Pwrite(fd, []byte("PWNED-BY-CONTAINER"), 0)
				syscall.Close(fd)
				if err == nil {
					opened++
				}
			}
			fmt.Printf("%s (%s) %s: %s\n", p, target, how, errName(err))
		}
		if strings.HasPrefix(target, "/memfd:") {
			fmt.Printf("%s (%s) seals: %s\n", p, target, seals(p))
		}
	}
	fmt.Println("written:", opened)
}

func openExe(p, how string) (int, error) {
	const oPath = 0x200000
	switch how {
	case "wronly":
		return syscall.Open(p, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	case "rdwr":
		return syscall.Open(p, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	case "trunc":
		return syscall.Open(p, syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0)
	}
	first, flags := oPath, syscall.O_WRONLY
	if how == "reopen-trunc" {
		first, flags = syscall.O_RDONLY, syscall.O_WRONLY|syscall.O_TRUNC
	}
	fd, err := syscall.Open(p, first|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer syscall.Close(fd)
	return syscall.Open(fmt.Sprintf("/proc/self/fd/%d", fd), flags|syscall.O_CLOEXEC, 0)
}

// seals returns the seals of the memfd behind p, in hex.
func seals(p string) string {
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return errName(err)
	}
	defer syscall.Close(fd)
	v, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), 1034 /* F_GET_SEALS */, 0)
	if e != 0 {
		return errName(e)
	}
	return fmt.Sprintf("%#x", v)
}

func dial(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		fmt.Println("dial error:", err)
		return 1
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		fmt.Println("read error:", err)
		return 1
	}
	fmt.Println("connected:", strings.TrimSpace(line))
	return 0
}

// connectAddrs connects a blocking socket to addr (IPv4) with connect(2)
// itself, not Go's non-blocking dial, and prints "connect: ok" or the
// errno, the socket's "local:" and "peer:" addresses (a socket switched to
// the host shows the host's side), and the first line the peer sends.
func connectAddrs(addr string) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		fmt.Println("connect: not an IPv4 address and port:", addr)
		return 2
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println("socket:", errName(err))
		return 1
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	fmt.Println("connect:", errName(err))
	if err != nil {
		return 1
	}
	for _, side := range []struct {
		name string
		get  func(int) (unix.Sockaddr, error)
	}{{"local", unix.Getsockname}, {"peer", unix.Getpeername}} {
		sa, err := side.get(fd)
		if in4, ok := sa.(*unix.SockaddrInet4); ok && err == nil {
			fmt.Printf("%s: %s\n", side.name, netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)))
		} else {
			fmt.Printf("%s: %s\n", side.name, errName(err))
		}
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	buf := make([]byte, 256) // the servers of the tests send one short line
	n, err := unix.Read(fd, buf)
	if n <= 0 {
		fmt.Println("read:", errName(err))
		return 1
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	fmt.Println("read:", line)
	return 0
}

func acceptPeers(args []string) int {
	ap, err1 := netip.ParseAddrPort(args[0])
	var n int
	_, err2 := fmt.Sscan(args[1], &n)
	delay, err3 := time.ParseDuration(args[2])
	if err := errors.Join(err1, err2, err3); err != nil || !ap.Addr().Is4() {
		fmt.Println("accept: usage: probe accept IP:PORT N DELAY", err)
		return 2
	}
	time.Sleep(delay)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil && len(args) > 3 && args[3] == "reuseport" {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	}
	if err == nil {
		err = unix.Listen(fd, 16)
	}
	fmt.Println("listen:", errName(err))
	if err != nil {
		return 1
	}
	fmt.Println("local:", sockAddr(unix.Getsockname(fd)))
	for i := 0; n == 0 || i < n; i++ {
		c, sa, err := unix.Accept(fd)
		if err != nil {
			fmt.Println("accept:", errName(err))
			return 1
		}
		line := "peer: " + sockAddr(sa, nil)
		fmt.Println(line)
		unix.Write(c, []byte(line+"\n"))
		unix.Close(c)
	}
	return 0
}

// relisten serves as Go servers do, with net.Listen's defaults (a
// dual-stack IPv6 socket, MPTCP where the kernel has it), ROUNDS times in
// turn: listen, answer one client the address it sees it at, close the
// listener (as iperf3 -s does after every test).
func relisten(args []string) int {
	var rounds int
	if len(args) != 2 {
		fmt.Println("relisten: usage: probe relisten ADDR ROUNDS")
		return 2
	}
	fmt.Sscan(args[1], &rounds)
	for i := 0; i < rounds; i++ {
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			fmt.Println("listen:", err)
			return 1
		}
		fmt.Printf("round %d local: %s\n", i, l.Addr())
		c, err := l.Accept()
		if err != nil {
			fmt.Println("accept:", err)
			return 1
		}
		line := "peer: " + c.RemoteAddr().String()
		fmt.Println(line)
		c.Write([]byte(line + "\n"))
		c.Close()
		l.Close()
	}
	return 0
}

// sockAddr formats an IPv4 address and port, or the error.
func sockAddr(sa unix.Sockaddr, err error) string {
	if in4, ok := sa.(*unix.SockaddrInet4); ok && err == nil {
		return netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)).String()
	}
	return fmt.Sprintf("%T %v", sa, errName(err))
}

func ifaces() {
	ifs, err := net.Interfaces()
	if err != nil {
		fmt.Println("ifaces:", err)
		os.Exit(1)
	}
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		var as []string
		for _, a := range addrs {
			as = append(as, a.String())
		}
		fmt.Printf("iface %s mtu=%d flags=%s addrs=%s\n", i.Name, i.MTU, i.Flags, strings.Join(as, ","))
	}
}

func statPaths(paths []string) {
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			fmt.Printf("%s: %s\n", p, errName(err))
			continue
		}
		kind := map[uint32]string{
			syscall.S_IFREG: "file", syscall.S_IFDIR: "dir", syscall.S_IFLNK: "symlink",
			syscall.S_IFCHR: "char", syscall.S_IFBLK: "block", syscall.S_IFIFO: "fifo", syscall.S_IFSOCK: "socket",
		}[st.Mode&syscall.S_IFMT]
		line := fmt.Sprintf("%s: %s %d:%d %04o uid=%d gid=%d", p, kind,
			(st.Rdev>>8)&0xfff, (st.Rdev&0xff)|((st.Rdev>>12)&0xfff00), st.Mode&07777, st.Uid, st.Gid)
		if kind == "symlink" {
			t, _ := os.Readlink(p)
			line += " -> " + t
		}
		fmt.Println(line)
	}
}

func masked(paths []string) {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			fmt.Printf("%s: %s\n", p, errName(err))
		case fi.IsDir():
			ents, err := os.ReadDir(p)
			fmt.Printf("%s: dir %d %s\n", p, len(ents), errName(err))
		default:
			f, err := os.Open(p)
			if err != nil {
				fmt.Printf("%s: file open %s\n", p, errName(err))
				continue
			}
			buf := make([]byte, 4096)
			n, err := f.Read(buf)
			f.Close()
			if err != nil && n == 0 && err.Error() == "EOF" {
				err = nil
			}
			fmt.Printf("%s: file %d %s\n", p, n, errName(err))
		}
	}
}

// rewrite writes each file's current content back into it, so a write
// that succeeds changes nothing (a sysctl keeps its value). It opens with
// O_TRUNC, as a shell's ">" does, which meets a read-only mount (EROFS)
// before the file's permissions. It prints the error of the open or of
// the write.
func rewrite(paths []string) {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err == nil {
			var f *os.File
			if f, err = os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
				_, err = f.Write(data)
				f.Close()
			}
		}
		fmt.Printf("rewrite %s: %s\n", p, errName(err))
	}
}

// segv dies from a real fault with SIGSEGV's default action, which the
// kernel delivers even to the init of a PID namespace (a signal sent with
// kill would be ignored there).
func segv() {
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0) // no core file
	var act [4]uintptr                                                   // sa_handler = SIG_DFL, no flags
	_, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	if e != 0 {
		fmt.Println("rt_sigaction:", errName(e))
		os.Exit(1)
	}
	fmt.Println("faulting")
	var p *int
	*p = 1
}

// tree prints one line for each entry under dir (dir itself is "."), in
// lexical order: its name relative to dir, then "key=value" fields: type,
// mode (with the setuid, setgid and sticky bits), owner, mtime in seconds;
// a file's size and content digest; a symlink's target; a device's numbers;
// for all but directories the link count and, when another name of the
// same inode came first, that name (ino=); every extended attribute, its
// value in hex. Run on
// an unpacked image inside a container and on another unpacker's tree
// outside, the two listings compare line by line. Directory sizes and
// link counts depend on the file system and are left out.
func tree(dir string) int {
	first := map[[2]uint64]string{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		kind := map[uint32]string{
			unix.S_IFREG: "file", unix.S_IFDIR: "dir", unix.S_IFLNK: "symlink",
			unix.S_IFCHR: "char", unix.S_IFBLK: "block", unix.S_IFIFO: "fifo", unix.S_IFSOCK: "socket",
		}[st.Mode&unix.S_IFMT]
		line := fmt.Sprintf("%s type=%s mode=%04o owner=%d:%d mtime=%d", rel, kind, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
		switch kind {
		case "file":
			sum, err := fileDigest(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d sha256=%s", st.Size, sum)
		case "symlink":
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " target=" + t
		case "char", "block":
			line += fmt.Sprintf(" rdev=%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		}
		if kind != "dir" {
			line += fmt.Sprintf(" nlink=%d", st.Nlink)
			id := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
			if f, ok := first[id]; ok {
				line += " ino=" + f
			} else {
				first[id] = rel
			}
		}
		xs, err := xattrs(p)
		if err != nil {
			return err
		}
		fmt.Println(line + xs)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe tree:", err)
		return 1
	}
	return 0
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// xattrs lists the extended attributes of p itself (not of a symlink's
// target) as " xattr.NAME=HEX" fields, sorted by name.
func xattrs(p string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ENOTSUP {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("llistxattr %s: %w", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := ""
	val := make([]byte, 64<<10)
	for _, name := range names {
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return "", fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		out += " xattr." + name + "=" + hex.EncodeToString(val[:m])
	}
	return out, nil
}
