package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Config is what Setup and Finish need; cmd/rabbitc builds it from the flags.
type Config struct {
	// Rootfs is the absolute host path of the rootfs directory.
	Rootfs string
	// ReadOnly makes the rootfs read-only (--read-only); /dev, /dev/shm,
	// /dev/mqueue, /proc and the volumes keep their own mode.
	ReadOnly bool
	// Volumes are the -v binds, in order.
	Volumes []Mount
	// Tmpfs are the --tmpfs mounts, after the volumes.
	Tmpfs []Tmpfs
	// EtcFiles are the generated /etc/hosts, /etc/hostname and
	// /etc/resolv.conf (see bindFiles).
	EtcFiles []File
	// HostNetwork is set with --net host: the init is not in a network
	// namespace of its own, sysfs cannot be mounted fresh, so the host's /sys
	// is bound read-only instead.
	HostNetwork bool
}

// Fresh file systems outside /dev (see devMounts for those).
var (
	procMount  = fsMount{dest: "/proc", fstype: "proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, magic: procMagic}
	sysfsMount = fsMount{dest: "/sys", fstype: "sysfs", flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, magic: sysfsMagic}
	// cgroupMount is the container's cgroup namespace, read-only, as docker
	// and podman mount it: programs that read their limits find them.
	cgroupMount = fsMount{dest: "/sys/fs/cgroup", fstype: "cgroup2", flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, magic: cgroupMagic}
)

// Setup builds the container's tree under cfg.Rootfs, in the current mount
// namespace, before PivotRoot: "/" becomes a slave mount, the rootfs is
// bound on itself, /proc, /dev and /sys are mounted, the /etc files and
// volumes are bound, and the masked and read-only paths are applied.
//
// Every destination is resolved inside the rootfs. Missing mount points are
// created there (directories 0755, empty files 0644); that is the only change
// it makes to the rootfs on disk.
func Setup(cfg Config) error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	r, err := bindRootfs(cfg.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	null, err := openHostDevice(devices[0])
	if err != nil {
		return err
	}
	defer null.Close()

	if err := r.setupProc(); err != nil {
		return err
	}
	if err := r.setupDev(null); err != nil {
		return err
	}
	if err := r.setupSys(cfg.HostNetwork); err != nil {
		return err
	}
	if !cfg.HostNetwork {
		if err := r.setupCgroup(); err != nil {
			return err
		}
	}
	if err := r.bindFiles(cfg.EtcFiles); err != nil {
		return err
	}
	for _, m := range cfg.Volumes {
		if err := r.bindVolume(m, "volume destination"); err != nil {
			return err
		}
	}
	for _, t := range cfg.Tmpfs {
		if err := r.mountTmpfs(t); err != nil {
			return err
		}
	}
	for _, p := range maskedPaths {
		if err := r.maskPath(p, null); err != nil {
			return err
		}
	}
	for _, p := range readonlyPaths {
		if err := r.readonlyPath(p); err != nil {
			return err
		}
	}
	return nil
}

// bindRootfs binds the rootfs on itself, so that it is a mount point that
// pivot_root accepts, and opens the root on the new mount.
func bindRootfs(path string) (*root, error) {
	under, err := os.OpenFile(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs %s: %w", path, bareErr(err))
	}
	defer under.Close()
	if err := bindOn(under, under, true, "rootfs "+path, "itself"); err != nil {
		return nil, err
	}
	r, err := openRoot(path)
	if err != nil {
		return nil, err
	}
	if err := verifyNewMount(under, r.dir, sameInode(under)); err != nil {
		r.Close()
		return nil, fmt.Errorf("reopen rootfs %s: %w (it changed during setup)", path, err)
	}
	return r, nil
}

// setupProc mounts a fresh procfs on /proc. The kernel refuses one (EPERM,
// mount_too_revealing) when no procfs rabbitc can see is fully visible:
// parts of it are covered, as in containers that mask /proc/kcore or
// /proc/sys. Setup then fails, as runc and crun do. It never binds the host's
// /proc instead: that shows every process of the outer system, and through
// /proc/PID/root and /proc/PID/cwd (more so with --cap-add SYS_PTRACE)
// reaches their files.
func (r *root) setupProc() error {
	under, err := r.openOrCreate(procMount.dest, true)
	if err != nil {
		return fmt.Errorf("mount point %w", err)
	}
	defer under.Close()
	if err := mountOn(under, procMount); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w (the kernel refuses a new /proc while parts of the /proc rabbitc runs under are covered, "+
				"as inside some containers; run rabbitc where /proc has no masked paths, "+
				"e.g. in a container started with --security-opt systempaths=unconfined (docker) or unmask=ALL (podman))", err)
		}
		return err
	}
	top, err := r.reopenMounted(under, procMount.dest, isFS(procMount.magic))
	if err != nil {
		return err
	}
	return top.Close()
}

// setupSys mounts a fresh read-only sysfs on /sys. With the host's network
// namespace (not ours, so the kernel refuses sysfs), or when refused anyway,
// it binds the host's /sys recursively and makes it read-only.
func (r *root) setupSys(hostNetwork bool) error {
	under, err := r.openOrCreate(sysfsMount.dest, true)
	if err != nil {
		return fmt.Errorf("mount point %w", err)
	}
	defer under.Close()
	if !hostNetwork {
		err = mountOn(under, sysfsMount)
		if err == nil {
			top, err := r.reopenMounted(under, sysfsMount.dest, isFS(sysfsMount.magic))
			if err != nil {
				return err
			}
			return top.Close()
		}
		if !errors.Is(err, unix.EPERM) {
			return err
		}
	}
	if err2 := bindHost("/sys", under); err2 != nil {
		if err != nil {
			return fmt.Errorf("%w; %w", err, err2)
		}
		return err2
	}
	top, err := r.reopenMounted(under, sysfsMount.dest, isFS(sysfsMount.magic))
	if err != nil {
		return err
	}
	defer top.Close()
	return remountReadOnly(top, sysfsMount.dest, true)
}

// setupCgroup mounts cgroup2 read-only on /sys/fs/cgroup of the fresh
// sysfs. A kernel that refuses it (no cgroup namespace, or one that lets
// no cgroup2 be mounted in a user namespace) leaves the directory empty, as
// before rabbitc mounted it: nothing depends on it but programs that look
// for their limits, and rabbitc sets none. (With --net host, /sys is the
// host's, with its own /sys/fs/cgroup.)
func (r *root) setupCgroup() error {
	under, err := r.open(cgroupMount.dest)
	if err != nil {
		return nil // not in this sysfs: nothing to mount on
	}
	defer under.Close()
	if err := mountOn(under, cgroupMount); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EBUSY) {
			return nil
		}
		return err
	}
	top, err := r.reopenMounted(under, cgroupMount.dest, isFS(cgroupMount.magic))
	if err != nil {
		return err
	}
	return top.Close()
}

// bindHost binds the host's directory hostPath (/sys) recursively on
// the handle under, which is the same path inside the container.
func bindHost(hostPath string, under *os.File) error {
	src, err := os.OpenFile(hostPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bind the host's %s: %w", hostPath, bareErr(err))
	}
	defer src.Close()
	return bindOn(src, under, true, "the host's "+hostPath, hostPath)
}

// bindVolume binds m.Source (a host path the user chose; symlinks in it are
// followed on the host) on m.Dest resolved inside the rootfs; role names the
// destination in errors.
func (r *root) bindVolume(m Mount, role string) error {
	src, err := os.OpenFile(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bind %s on %s: open source: %w", m.Source, m.Dest, bareErr(err))
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", m.Source, err)
	}
	h, err := r.openOrCreate(m.Dest, st.Mode&unix.S_IFMT == unix.S_IFDIR)
	if err != nil {
		return fmt.Errorf("%s %w", role, err)
	}
	defer h.Close()
	if err := bindOn(src, h, true, m.Source, m.Dest); err != nil {
		return err
	}
	if !m.ReadOnly {
		return nil
	}
	top, err := r.reopenMounted(h, m.Dest, sameInode(src))
	if err != nil {
		return err
	}
	defer top.Close()
	return remountReadOnly(top, m.Dest, true)
}

// File is a file made for the container: Content, bound on Dest (resolved
// inside the rootfs).
type File struct {
	Dest    string
	Content []byte
}

// generatedFS holds the generated files while they are bound.
var generatedFS = fsMount{dest: "/dev/.rabbitc", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, data: "mode=0700,size=256k", magic: tmpfsMagic}

// bindFiles writes files into a small tmpfs of their own, mounted for the
// moment on /dev/.rabbitc in the container's fresh /dev, binds each on its
// destination, then detaches the tmpfs and removes the directory: the
// container sees only the binds (mountinfo: tmpfs, root /hosts).
//
// Init writes them, in the container's mount namespace, instead of rabbitc
// in its state directory as before: the host sees no such files, the
// parent writes nothing while newuidmap runs (0.3 ms of its CPU, on ext4,
// in the busiest stretch of the start-up), and a container's state
// directory holds state.json alone.
func (r *root) bindFiles(files []File) error {
	if len(files) == 0 {
		return nil
	}
	dev, err := r.open("/dev")
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := isFS(tmpfsMagic)(dev); err != nil { // the tmpfs setupDev mounted
		return fmt.Errorf("/dev: %w", err)
	}
	name := strings.TrimPrefix(generatedFS.dest, "/dev/")
	if err := unix.Mkdirat(int(dev.Fd()), name, 0o700); err != nil {
		return fmt.Errorf("mkdir %s: %w", generatedFS.dest, err)
	}
	defer unix.Unlinkat(int(dev.Fd()), name, unix.AT_REMOVEDIR)
	under, err := openAt(dev, name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", generatedFS.dest, err)
	}
	defer under.Close()
	if err := mountOn(under, generatedFS); err != nil {
		return err
	}
	dir, err := r.reopenMounted(under, generatedFS.dest, isFS(generatedFS.magic))
	if err != nil {
		return err
	}
	defer func() {
		unix.Unmount(fdPath(dir), unix.MNT_DETACH)
		dir.Close()
	}()
	used := map[string]bool{}
	for i, f := range files {
		name := path.Base(f.Dest) // what mountinfo shows as the bind's root
		if used[name] || name == "/" || name == "." {
			name = fmt.Sprintf("%d-%s", i, strings.Trim(name, "/."))
		}
		used[name] = true
		if err := r.bindFile(dir, name, f); err != nil {
			return err
		}
	}
	return nil
}

// bindFile writes f as name in dir and binds it on f.Dest.
func (r *root) bindFile(dir *os.File, name string, f File) error {
	w, err := openAt(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", f.Dest, err)
	}
	_, err = w.Write(f.Content)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Dest, err)
	}
	src, err := openAt(dir, name, unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", f.Dest, err)
	}
	defer src.Close()
	h, err := r.openOrCreate(f.Dest, false)
	if err != nil {
		return fmt.Errorf("mount point %w", err)
	}
	defer h.Close()
	return bindOn(src, h, false, "generated "+f.Dest, f.Dest)
}
