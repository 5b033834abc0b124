package netns

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The functions in this file run in the sandbox or in init: inside the
// container's network namespace, with CAP_NET_ADMIN in its user namespace.

// SetupLoopback brings lo up. slirp4netns --configure does this too; with
// --net none nobody else does.
func SetupLoopback() error {
	// A new network namespace registers lo first: it is always index 1
	// (the kernel's LOOPBACK_IFINDEX). Setting it up by index is one
	// request; looking it up by name first doubled the library's work
	// (0.28 ms of CPU per start on this machine, measured with perf).
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// PrepareNamespace readies the container's new network namespace before
// slirp4netns starts: lo up (--net none and slirp4netns), and with
// slirp4netns a persistent tap0 (CreateTap). With ModeHost there is no
// namespace of the container's own, and nothing to do. The sandbox calls
// it, or init when rabbitc starts it without a sandbox.
func PrepareNamespace(mode string) error {
	if mode == ModeHost {
		return nil
	}
	if err := SetupLoopback(); err != nil {
		return err
	}
	if mode == ModeSlirp || mode == "" {
		return CreateTap()
	}
	return nil
}

// CreateTap creates tap0 for slirp4netns, persistent and unconfigured,
// before slirp4netns starts; slirp4netns attaches to it by name (TUNSETIFF
// on an existing persistent device) and configures it as usual.
//
// Why: a tap device that slirp4netns creates is removed when slirp4netns
// closes it, and that removal waits for RCU grace periods: slirp4netns took
// 18-21 ms to exit here, which every container with the default network
// paid at its end (rabbitc waits for slirp4netns so as to leave no process
// behind). A persistent device outlives its file; it goes with the network
// namespace, whose teardown the kernel runs in its own worker once the
// last process and file of the namespace are gone. slirp4netns then exits
// in 0.5 ms, and is ready a little sooner (the device exists).
//
// netlink.LinkAdd of a Tuntap does these two ioctls too, but also
// TUNSETOWNER and TUNSETGROUP with ids of the caller's user namespace,
// which fail with EINVAL here: the sandbox and init run before the maps are
// written. The device has no owner, so attaching to it takes CAP_NET_ADMIN
// in the namespace, as creating one does.
func CreateTap() error {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("create %s: %w", TapName, &os.PathError{Op: "open", Path: tunPath, Err: err})
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(TapName)
	if err != nil {
		return fmt.Errorf("create %s: %w", TapName, err)
	}
	// slirp4netns asks for the same flags when it attaches.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("create %s: TUNSETIFF: %w", TapName, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("create %s: TUNSETPERSIST: %w", TapName, err)
	}
	return nil
}

// CheckTap checks that slirp4netns has configured tap0: it exists, is up and
// has ContainerIP. Init calls it just before exec with ModeSlirp, so that a
// payload that reads its address at start-up finds it.
func CheckTap() error {
	tap, err := netlink.LinkByName(TapName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("check %s: no such interface (slirp4netns did not create it)", TapName)
		}
		return fmt.Errorf("check %s: %w", TapName, err)
	}
	if tap.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("check %s: interface is down", TapName)
	}
	addrs, err := netlink.AddrList(tap, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("check %s: list addresses: %w", TapName, err)
	}
	want := net.ParseIP(ContainerIP)
	var have []string
	for _, a := range addrs {
		if a.IP.Equal(want) {
			return nil
		}
		have = append(have, a.IPNet.String())
	}
	return fmt.Errorf("check %s: address %s missing (has %v)", TapName, ContainerIP, have)
}
