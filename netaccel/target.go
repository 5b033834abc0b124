//go:build linux

package netaccel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errGone is a notification whose task left the call (a signal, or it
// died): it needs no answer.
var errGone = errors.New("notification no longer valid")

// target is the task behind one notification: its descriptors (through a
// pidfd), its memory and its /proc directory. Every handle is opened
// before a validity check, so that a tid reused by another task after the
// notification was sent is never acted on.
type target struct {
	l     *listener
	id    uint64
	tid   int
	pidfd int
	proc  int // /proc/TID, a directory descriptor
}

func openTarget(l *listener, n notif) (*target, error) {
	tid := int(n.Pid)
	if tid <= 0 {
		return nil, fmt.Errorf("notification %d: task not visible from the supervisor's pid namespace", n.ID)
	}
	t := &target{l: l, id: n.ID, tid: tid, pidfd: -1, proc: -1}
	var err error
	t.proc, err = unix.Open("/proc/"+strconv.Itoa(tid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.close()
		if !l.valid(n.ID) {
			return nil, errGone
		}
		return nil, fmt.Errorf("open /proc/%d: %w", tid, err)
	}
	t.pidfd, err = unix.PidfdOpen(tid, unix.PIDFD_THREAD)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 6.9 a pidfd names a thread-group leader; the
		// threads of a process share its descriptor table.
		var tgid int
		if tgid, err = t.tgid(); err == nil {
			t.pidfd, err = unix.PidfdOpen(tgid, 0)
		}
	}
	if err != nil {
		t.close()
		if !l.valid(n.ID) {
			return nil, errGone
		}
		return nil, fmt.Errorf("pidfd_open %d: %w", tid, err)
	}
	if !l.valid(n.ID) {
		t.close()
		return nil, errGone
	}
	return t, nil
}

func (t *target) close() {
	if t.pidfd >= 0 {
		unix.Close(t.pidfd)
	}
	if t.proc >= 0 {
		unix.Close(t.proc)
	}
}

func (t *target) valid() bool { return t.l.valid(t.id) }

func (t *target) tgid() (int, error) {
	b, err := t.readProc("status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no Tgid", t.tid)
}

// read copies len(buf) bytes of the task's memory at addr, whole or not
// at all. The caller reads each argument once and decides on that copy.
func (t *target) read(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(t.tid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// process_vm_readv compiled out or refused: /proc/TID/mem.
		fd, err := unix.Openat(t.proc, "mem", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		n, err = unix.Pread(fd, buf, int64(addr))
		if err == nil && n == len(buf) {
			return nil
		}
	}
	if err == nil {
		err = fmt.Errorf("read %d of %d bytes", n, len(buf))
	}
	return fmt.Errorf("read the memory of task %d at %#x: %w", t.tid, addr, err)
}

// getfd duplicates the task's descriptor fd into the supervisor: the same
// open file, close-on-exec here.
func (t *target) getfd(fd int) (int, error) {
	return unix.PidfdGetfd(t.pidfd, fd, 0)
}

// takeSocket gets the task's descriptor fd (getfd) and then checks that
// the notification still stands, as every answer built on the file must:
// gone, the task left the call (answer verdictDrop, sock is not open);
// err, the descriptor could not be taken.
func (t *target) takeSocket(fd int) (sock int, gone bool, err error) {
	sock, err = t.getfd(fd)
	if err != nil {
		return -1, !t.valid(), err
	}
	if !t.valid() {
		unix.Close(sock)
		return -1, true, nil
	}
	return sock, false, nil
}

func (t *target) readProc(name string) ([]byte, error) {
	fd, err := unix.Openat(t.proc, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

// fdInfo is what /proc/TID/fdinfo/FD says of a descriptor.
type fdInfo struct {
	cloexec bool
	ino     uint64
	haveIno bool
}

func (t *target) fdinfo(fd int) (fdInfo, error) {
	b, err := t.readProc("fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return fdInfo{}, err
	}
	var info fdInfo
	var haveFlags, haveIno bool
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "flags":
			fl, err := strconv.ParseUint(v, 8, 64)
			if err != nil {
				return fdInfo{}, fmt.Errorf("fdinfo %d: flags %q", fd, v)
			}
			info.cloexec, haveFlags = fl&unix.O_CLOEXEC != 0, true
		case "ino":
			if info.ino, err = strconv.ParseUint(v, 10, 64); err != nil {
				return fdInfo{}, fmt.Errorf("fdinfo %d: ino %q", fd, v)
			}
			haveIno = true
		}
	}
	if !haveFlags {
		return fdInfo{}, fmt.Errorf("fdinfo %d: no flags", fd)
	}
	info.haveIno = haveIno // Linux 5.14
	return info, nil
}

// sharing tells whether the socket with inode ino, open at descriptor fd,
// is also open at another descriptor of the task, or registered with one
// of its epoll instances. Either would keep using the socket the switch
// replaces: ADDFD swaps one descriptor, and an epoll instance holds the
// file it was given. The registrations come from each epoll descriptor's
// fdinfo, whose "ino" names every registered file, also one registered
// under a descriptor number since closed (kcmp(KCMP_EPOLL_TFD) would need
// that number). Epoll instances and descriptors of other processes
// (inherited across fork) are not seen.
//
// The fd directory is open to the task's owner only (mode 0500, no
// capability of the container's user namespace counts), so a task of
// another user than the supervisor's, one of the container's other users
// (USER www-data, a server's workers after setuid), is looked at through
// its fdinfo directory, which ptrace access opens: sharingFdinfo.
func (t *target) sharing(fd int, ino uint64) (string, error) {
	dir, err := unix.Openat(t.proc, "fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		return t.sharingFdinfo(fd, ino)
	}
	if err != nil {
		return "", err
	}
	defer unix.Close(dir)
	sockLink := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	self := strconv.Itoa(fd)
	var epolls []string
	link := make([]byte, 64)
	names, err := dirNames(dir)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		m, err := unix.Readlinkat(dir, name, link)
		if err != nil {
			continue // closed since the listing
		}
		switch l := string(link[:m]); {
		case l == sockLink && name != self:
			return "the socket is also open at descriptor " + name, nil
		case l == "anon_inode:[eventpoll]":
			epolls = append(epolls, name)
		}
	}
	for _, ep := range epolls {
		b, err := t.readProc("fdinfo/" + ep)
		if err != nil {
			continue
		}
		if registered(b, ino) {
			return "the socket is registered with epoll descriptor " + ep, nil
		}
	}
	return "", nil
}

// sharingFdinfo is sharing from the fdinfo of every descriptor: its "ino"
// line (Linux 5.14) names the file open there, and an epoll instance's
// "tfd" lines the files registered with it. It reads a file per
// descriptor where sharing reads a link.
func (t *target) sharingFdinfo(fd int, ino uint64) (string, error) {
	dir, err := unix.Openat(t.proc, "fdinfo", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	names, err := dirNames(dir)
	unix.Close(dir)
	if err != nil {
		return "", err
	}
	self := strconv.Itoa(fd)
	sawSelf := false
	for _, name := range names {
		b, err := t.readProc("fdinfo/" + name)
		if err != nil {
			continue // closed since the listing
		}
		own, ok := fdinfoIno(b)
		switch {
		case name == self:
			if !ok || own != ino {
				return "", fmt.Errorf("fdinfo %s: no ino of the socket", name)
			}
			sawSelf = true
		case ok && own == ino:
			return "the socket is also open at descriptor " + name, nil
		case registered(b, ino):
			return "the socket is registered with epoll descriptor " + name, nil
		}
	}
	if !sawSelf {
		return "", fmt.Errorf("fdinfo %s: not listed", self)
	}
	return "", nil
}

// dirNames lists an open directory.
func dirNames(dir int) ([]string, error) {
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dir, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// fdinfoIno is the "ino" line of an fdinfo file.
func fdinfoIno(b []byte) (uint64, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ino:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// registered tells whether an epoll instance's fdinfo lists the file
// with inode ino (its "tfd" lines give it in hex).
func registered(fdinfo []byte, ino uint64) bool {
	want := []byte("ino:" + strconv.FormatUint(ino, 16) + " ")
	sc := bufio.NewScanner(bytes.NewReader(fdinfo))
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("tfd:")) && bytes.Contains(append(line, ' '), want) {
			return true
		}
	}
	return false
}

// socketcallArgs reads the first three arguments of an i386 socketcall.
func (t *target) socketcallArgs(ptr uint64) ([3]uint32, error) {
	var a [3]uint32
	b := unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), 12)
	err := t.read(ptr, b)
	return a, err
}

// holder returns a process of t's PID namespace (the container's, seen
// from the supervisor's /proc) that has the file with inode ino open, or
// 0 when none has. The supervisor's own process, which keeps every
// published socket, is left out. A descriptor in flight in a unix
// socket's queue is not seen: the worst that follows is two holders of
// the one listener, as a fork would make.
func holder(t *target, ino uint64) (int, error) {
	pidns, err := readlinkAt(t.proc, "ns/pid")
	if err != nil {
		return 0, fmt.Errorf("the container's PID namespace: %w", err)
	}
	proc, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	names, err := dirNames(proc)
	defer unix.Close(proc)
	if err != nil {
		return 0, err
	}
	self := unix.Getpid()
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == self {
			continue
		}
		dir, err := unix.Openat(proc, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // gone
		}
		other := &target{tid: pid, proc: dir, pidfd: -1}
		held := false
		if ns, err := readlinkAt(dir, "ns/pid"); err == nil && ns == pidns {
			held, err = other.opens(ino)
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				other.close()
				return 0, fmt.Errorf("the descriptors of process %d: %w", pid, err)
			}
		}
		other.close()
		if held {
			return pid, nil
		}
	}
	return 0, nil
}

// opens tells whether the task has the file with inode ino open, from its
// fd directory, or its fdinfo directory where the first is closed to the
// supervisor (see sharing).
func (t *target) opens(ino uint64) (bool, error) {
	dir, err := unix.Openat(t.proc, "fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	viaInfo := err == unix.EACCES
	if viaInfo {
		dir, err = unix.Openat(t.proc, "fdinfo", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return false, err
	}
	names, err := dirNames(dir)
	defer unix.Close(dir)
	if err != nil {
		return false, err
	}
	sockLink := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	for _, name := range names {
		if viaInfo {
			b, err := t.readProc("fdinfo/" + name)
			if own, ok := fdinfoIno(b); err == nil && ok && own == ino {
				return true, nil
			}
			continue
		}
		if l, err := readlinkAt(dir, name); err == nil && l == sockLink {
			return true, nil
		}
	}
	return false, nil
}

func readlinkAt(dir int, name string) (string, error) {
	buf := make([]byte, 128)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
