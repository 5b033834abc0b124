package hostcheck

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Slirp is what netns made of the slirp4netns in $PATH, passed in by
// cmd/rabbitc: netns's rule (netns.CheckSlirp) decides whether rabbitc can
// run it, and this package only reports.
type Slirp struct {
	Path    string   // "" when it is not in $PATH
	Version string   // from --version; "" if unknown
	Options []string // the options that confine it, as run passes them
	Err     error    // netns's refusal, which ends with its fix in parentheses
}

func (s Slirp) check() Check {
	const name = "slirp4netns"
	switch {
	case s.Path == "":
		return rootFix(Error, name, "not found in $PATH", "apt-get install slirp4netns")
	case s.Err != nil:
		detail, fix := splitFix(s.Err.Error())
		return userFix(Error, name, detail, fix)
	}
	v := s.Version
	if v == "" {
		v = "of unknown version"
	}
	return ok(name, s.Path+" "+v+", runs with "+strings.Join(s.Options, " "))
}

// splitFix splits a message of the form "what went wrong (the fix)" at
// the parenthesis that closes it; a message without one is all detail.
func splitFix(msg string) (detail, fix string) {
	if !strings.HasSuffix(msg, ")") {
		return msg, ""
	}
	depth := 0
	for i := len(msg) - 1; i >= 0; i-- {
		switch msg[i] {
		case ')':
			depth++
		case '(':
			if depth--; depth == 0 {
				if i == 0 || msg[i-1] != ' ' {
					return msg, ""
				}
				return msg[:i-1], msg[i+1 : len(msg)-1]
			}
		}
	}
	return msg, ""
}

const tunPath = "/dev/net/tun"

// Tun opens /dev/net/tun read-write, as slirp4netns does in the
// container's namespaces.
func Tun() Check {
	f, err := os.OpenFile(tunPath, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return ok(tunPath, "opens read-write")
	}
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return rootFix(Error, tunPath, err.Error(), "modprobe tun")
	case errors.Is(err, os.ErrPermission):
		return rootFix(Error, tunPath, err.Error(), "chmod 0666 "+tunPath)
	}
	return rootFix(Error, tunPath, err.Error(), "")
}

const sysctlPortStart = "net.ipv4.ip_unprivileged_port_start"

// PortStart reads the first port a user may bind on the host, where
// rabbitc listens for published ports; root binds any.
func PortStart(uid int) Check {
	if uid == 0 {
		return ok(sysctlPortStart, "root publishes any host port")
	}
	v, present := readSysctl(sysctlPortStart)
	return portStart(v, present)
}

func portStart(v string, present bool) Check {
	n, err := strconv.Atoi(v)
	switch {
	case !present:
		return ok(sysctlPortStart, "not in this kernel")
	case err != nil:
		return userFix(Warning, sysctlPortStart, fmt.Sprintf("%q is not a number", v), "")
	case n == 0:
		return ok(sysctlPortStart, "0: any host port can be published")
	}
	to := "0"
	if n > 80 {
		to = "80"
	}
	return rootFix(Warning, sysctlPortStart, fmt.Sprintf("%d: host ports below %d cannot be published", n, n), setSysctl(sysctlPortStart, to))
}
