package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OpenPTY opens a new pseudo-terminal from the container's /dev/ptmx (after
// PivotRoot, so it belongs to the container's own devpts instance), unlocks
// it and opens its slave. Both are close-on-exec; the caller hands the slave
// to the payload as its stdio and controlling terminal.
func OpenPTY() (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return nil, nil, fmt.Errorf("get pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	// TIOCGPTPEER (4.13+) opens the slave through the master, with no path
	// lookup that the container's tree could redirect.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		if !errors.Is(errno, unix.EINVAL) && !errors.Is(errno, unix.ENOTTY) {
			return nil, nil, fmt.Errorf("open pty slave %s: %w", name, errno)
		}
		fd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("open %s: %w", name, err)
		}
		sfd = uintptr(fd)
	}
	return master, os.NewFile(sfd, name), nil
}

// BindConsole binds the pty slave on /dev/console (after PivotRoot), as runc
// does with -t, for programs that write to the console. /dev is the tmpfs
// Setup mounted, so the name is created there with O_EXCL|O_NOFOLLOW.
func BindConsole(slave *os.File) error {
	dev, err := os.OpenFile("/dev", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := isFS(tmpfsMagic)(dev); err != nil {
		return fmt.Errorf("bind console: /dev: %w", err)
	}
	target, err := openAt(dev, "console", unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create /dev/console: %w", err)
	}
	defer target.Close()
	return bindOn(slave, target, false, slave.Name(), "/dev/console")
}
