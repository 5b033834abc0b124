package netns

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// The functions in this file run in the sandbox or in init: inside the
// container's network namespace, with CAP_NET_ADMIN in its user namespace.

// SetupLoopback brings lo up. slirp4netns --configure does this too; with
// --net none nobody else does.
func SetupLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
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
