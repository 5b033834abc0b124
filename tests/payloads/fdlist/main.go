// Command fdlist prints the descriptors open in its own process and its
// working directory, one per line ("fd 0 -> /dev/null", "cwd -> /").
//
// It reads /proc/self/fd with raw system calls before anything else runs, so
// the list holds exactly what it inherited from the container runtime (the Go
// runtime's own poller descriptors are created later, if at all). The go:debug
// line stops the runtime from keeping the cgroup CPU files open.

//go:debug containermaxprocs=0
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

func main() {
	dirfd, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fdlist: open /proc/self/fd:", err)
		os.Exit(1)
	}
	var fds []int
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Getdents(dirfd, buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fdlist: getdents:", err)
			os.Exit(1)
		}
		if n == 0 {
			break
		}
		for off := 0; off < n; {
			d := (*syscall.Dirent)(unsafe.Pointer(&buf[off]))
			name := direntName(d)
			off += int(d.Reclen)
			fd, err := strconv.Atoi(name)
			if err != nil || fd == dirfd {
				continue
			}
			fds = append(fds, fd)
		}
	}
	targets := make([]string, len(fds))
	for i, fd := range fds {
		targets[i] = readlink("/proc/self/fd/" + strconv.Itoa(fd))
	}
	cwd := readlink("/proc/self/cwd")
	syscall.Close(dirfd)
	for i, fd := range fds {
		fmt.Printf("fd %d -> %s\n", fd, targets[i])
	}
	fmt.Printf("cwd -> %s\n", cwd)
}

func direntName(d *syscall.Dirent) string {
	b := (*[256]byte)(unsafe.Pointer(&d.Name[0]))
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b[:])
}

func readlink(p string) string {
	buf := make([]byte, 4096)
	n, err := syscall.Readlink(p, buf)
	if err != nil {
		return "? " + err.Error()
	}
	return string(buf[:n])
}
