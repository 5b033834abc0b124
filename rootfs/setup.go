package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Config is what Setup and Finish need. cmd/rabbitc builds it from the flags
// of `rabbitc run` (DefaultMounts, then the volumes and --tmpfs) or from a
// bundle's config.json (the runtime spec's root, mounts and linux fields).
type Config struct {
	// Rootfs is the absolute host path of the rootfs directory.
	Rootfs string
	// ReadOnly makes the rootfs read-only (--read-only, root.readonly); the
	// mounts keep their own mode.
	ReadOnly bool
	// Mounts are the runtime spec's mounts, in order. Each destination is
	// resolved inside the rootfs; a missing mount point is created there, a
	// directory or an empty file after the kind of a bind's source.
	Mounts []specs.Mount
	// MaskedPaths and ReadonlyPaths (linux.maskedPaths, linux.readonlyPaths)
	// are applied after the mounts; DefaultMaskedPaths and
	// DefaultReadonlyPaths are rabbitc run's.
	MaskedPaths, ReadonlyPaths []string
	// Overlay, for a container of an image, is mounted on Rootfs first: the
	// image's layers and the container's writes (see Overlay).
	Overlay *Overlay
	// Sysctl are linux.sysctl, written under the container's /proc/sys
	// before the read-only paths (/proc/sys among them) are applied.
	// CheckSysctl says which the container may set.
	Sysctl map[string]string
	// Devices (linux.devices) are bound, after the default ones, from the
	// host's node of the same path, which must be a device of that type,
	// major and minor: mknod is not allowed in a user namespace.
	Devices []specs.LinuxDevice
	// RootPropagation (linux.rootfsPropagation) is the propagation of "/":
	// shared, slave, private, unbindable or their r- forms; "" is rslave.
	RootPropagation string
	// EtcFiles are the generated /etc/hosts, /etc/hostname and
	// /etc/resolv.conf (see bindFiles), bound once /dev is mounted.
	EtcFiles []File
	// HostNetwork is set with --net host: the init is not in a network
	// namespace of its own, sysfs cannot be mounted fresh, so the host's /sys
	// is bound read-only instead, and no cgroup2 is mounted.
	HostNetwork bool
}

// DefaultMounts returns the mounts of `rabbitc run` before the volumes, as
// `runc spec` writes them (its /proc has no options; rabbitc's is nosuid,
// noexec, nodev, as containerd's).
func DefaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=" + strconv.Itoa(ttyGID)}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// fsMagics are the statfs types checked after a fresh mount of a known
// file system; other types are checked to be a new mount at the right place.
var fsMagics = map[string]int64{
	"proc":    procMagic,
	"sysfs":   sysfsMagic,
	"tmpfs":   tmpfsMagic,
	"devpts":  devptsMagic,
	"mqueue":  mqueueMagic,
	"cgroup2": cgroupMagic,
}

// setup is one run of Setup: the root and what the mounts have done so far.
type setup struct {
	*root
	cfg  Config
	null *os.File // the verified host /dev/null
	// devFilled: /dev is a tmpfs of the list, filled with the default devices
	// and symlinks, and the /etc files are bound.
	devFilled bool
}

// Setup builds the container's tree under cfg.Rootfs, in the current mount
// namespace, before PivotRoot: "/" gets its propagation, the rootfs is bound
// on itself, cfg.Mounts are mounted in order, the default devices, the
// devices of cfg are bound, and the masked and read-only paths are applied.
// The /etc files are bound right after the tmpfs on /dev (see setupDev).
//
// Every destination is resolved inside the rootfs. Missing mount points are
// created there (directories 0755, empty files 0644); that is the only change
// it makes to the rootfs on disk (and, when no tmpfs is mounted on /dev, the
// /dev symlinks).
func Setup(cfg Config) error {
	prop, err := parsePropagation(cfg.RootPropagation)
	if err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("make / a %s mount: %w", propagationName(prop), err)
	}
	// A shared parent would propagate the rootfs bind back out; an
	// unbindable one refuses the bind (EINVAL). runc makes it private too.
	if prop&(unix.MS_SHARED|unix.MS_UNBINDABLE) != 0 {
		if err := parentMountPrivate(cfg.Rootfs, prop&unix.MS_UNBINDABLE != 0); err != nil {
			return err
		}
	}
	if cfg.Overlay != nil {
		if err := MountOverlay(cfg.Overlay, cfg.Rootfs); err != nil {
			return err
		}
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
	s := &setup{root: r, cfg: cfg, null: null}

	for _, m := range cfg.Mounts {
		if err := s.mount(m); err != nil {
			return err
		}
	}
	if !s.devFilled {
		if err := s.fillDevOnDisk(); err != nil {
			return err
		}
	}
	for _, d := range cfg.Devices {
		if err := s.bindSpecDevice(d); err != nil {
			return err
		}
	}
	if !s.devFilled && len(cfg.EtcFiles) > 0 {
		// They need the fresh /dev for their temporary tmpfs (bindFiles),
		// not a directory made in the rootfs on disk.
		return errors.New("bind the generated /etc files: no tmpfs on /dev in the mounts (list one, as DefaultMounts does)")
	}
	if err := r.writeSysctls(cfg.Sysctl); err != nil {
		return err
	}
	for _, p := range cfg.MaskedPaths {
		if err := r.maskPath(p, null); err != nil {
			return err
		}
	}
	for _, p := range cfg.ReadonlyPaths {
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

// mount sets up one entry of cfg.Mounts, by its type: the file systems
// rabbitc knows have their own step; binds and any other type go the general
// way. Every new mount is looked up again inside the rootfs and checked to be
// the new mount at the same place (reopenMounted) before its propagation and
// recursive attributes are applied to it.
func (s *setup) mount(m specs.Mount) error {
	dest, err := mountDest(m)
	if err != nil {
		return err
	}
	o := parseMountOptions(m.Options)
	if o.idmap || len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		return fmt.Errorf("mount %s on %s: ID-mapped mounts are not supported (drop the idmap option and the mount's uid and gid mappings)", m.Type, dest)
	}
	var top *os.File
	switch {
	case o.bind || m.Type == "bind":
		top, err = s.bindMount(m, dest, o)
	case o.flags&unix.MS_REMOUNT != 0:
		return fmt.Errorf("mount %s on %s: remount is only for binds (drop the option)", m.Type, dest)
	case m.Type == "proc":
		top, err = s.setupProc(dest, o)
	case m.Type == "sysfs":
		top, err = s.setupSys(dest, o)
	case m.Type == "cgroup" || m.Type == "cgroup2":
		if s.cfg.HostNetwork {
			return nil // /sys is the host's, with its own /sys/fs/cgroup
		}
		top, err = s.setupCgroup(dest, o)
	case m.Type == "tmpfs" && dest == "/dev" && !s.devFilled:
		top, err = s.setupDev(m, o)
	case m.Type == "devpts":
		if o.data, err = devptsData(o.data, idMappedIn); err != nil {
			return fmt.Errorf("mount devpts on %s: %w", dest, err)
		}
		top, err = s.mountFresh(m, dest, o)
	default:
		top, err = s.mountFresh(m, dest, o)
	}
	if err != nil || top == nil {
		return err
	}
	defer top.Close()
	return applyPropagation(top, dest, o)
}

// mountDest checks a mount's destination: absolute (as the runtime spec
// wants it) and not "/". It is still an unsafePath.
func mountDest(m specs.Mount) (string, error) {
	if !path.IsAbs(m.Destination) {
		return "", fmt.Errorf("mount %s on %q: the destination is not an absolute path", m.Type, m.Destination)
	}
	dest := path.Clean(m.Destination)
	if dest == "/" {
		return "", fmt.Errorf("mount %s on /: the destination cannot be / (the rootfs is root.path)", m.Type)
	}
	return dest, nil
}

// freshMount is the plan of a new file system instance for m.
func freshMount(m specs.Mount, dest, fstype string, o mountOptions) fsMount {
	return fsMount{dest: dest, source: m.Source, fstype: fstype, flags: o.flags, data: o.data, magic: fsMagics[fstype]}
}

// mountFresh mounts a new instance of m's file system on its destination,
// resolved inside the root (a missing directory is created there), and
// returns the new mount, checked.
func (s *setup) mountFresh(m specs.Mount, dest string, o mountOptions) (*os.File, error) {
	fm := freshMount(m, dest, m.Type, o)
	under, err := s.openOrCreate(dest, true)
	if err != nil {
		return nil, fmt.Errorf("mount point %w", err)
	}
	defer under.Close()
	if err := mountOn(under, fm); err != nil {
		return nil, err
	}
	return s.reopenMounted(under, dest, fm.check())
}

// setupProc mounts a fresh procfs. The kernel refuses one (EPERM,
// mount_too_revealing) when no procfs rabbitc can see is fully visible:
// parts of it are covered, as in containers that mask /proc/kcore or
// /proc/sys. Setup then fails, as runc and crun do. It never binds the host's
// /proc instead: that shows every process of the outer system, and through
// /proc/PID/root and /proc/PID/cwd (more so with --cap-add SYS_PTRACE)
// reaches their files.
func (s *setup) setupProc(dest string, o mountOptions) (*os.File, error) {
	top, err := s.mountFresh(specs.Mount{Type: "proc", Source: "proc"}, dest, o)
	if errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("%w (the kernel refuses a new /proc while parts of the /proc rabbitc runs under are covered, "+
			"as inside some containers; run rabbitc where /proc has no masked paths, "+
			"e.g. in a container started with --security-opt systempaths=unconfined (docker) or unmask=ALL (podman))", err)
	}
	return top, err
}

// setupSys mounts a fresh sysfs. With the host's network namespace (not
// ours, so the kernel refuses sysfs), or when refused anyway, it binds the
// host's /sys recursively instead, with the options' flags (ro) made
// recursive.
func (s *setup) setupSys(dest string, o mountOptions) (*os.File, error) {
	under, err := s.openOrCreate(dest, true)
	if err != nil {
		return nil, fmt.Errorf("mount point %w", err)
	}
	defer under.Close()
	fm := freshMount(specs.Mount{Source: "sysfs"}, dest, "sysfs", o)
	if !s.cfg.HostNetwork {
		err = mountOn(under, fm)
		if err == nil {
			return s.reopenMounted(under, dest, fm.check())
		}
		if !errors.Is(err, unix.EPERM) {
			return nil, err
		}
	}
	if err2 := bindHost("/sys", under, dest); err2 != nil {
		if err != nil {
			return nil, fmt.Errorf("%w; %w", err, err2)
		}
		return nil, err2
	}
	top, err := s.reopenMounted(under, dest, fm.check())
	if err != nil {
		return nil, err
	}
	if err := remountBind(top, dest, o.flags, true); err != nil {
		top.Close()
		return nil, err
	}
	return top, nil
}

// setupCgroup mounts the container's cgroup namespace (cgroup2, whatever
// the list's type says: the v1 hierarchies cannot be mounted in a user
// namespace), read-only with "ro" as docker and podman mount it: programs
// that read their limits find them. A missing mount point (inside a sysfs
// nothing can be created) or a kernel that refuses the mount (no cgroup
// namespace, or one that lets no cgroup2 be mounted in a user namespace)
// leaves the directory as it was: nothing depends on it but programs that
// look for their limits, and rabbitc sets none.
func (s *setup) setupCgroup(dest string, o mountOptions) (*os.File, error) {
	under, err := s.open(dest)
	if err != nil {
		return nil, nil
	}
	defer under.Close()
	fm := freshMount(specs.Mount{Source: "cgroup2"}, dest, "cgroup2", o)
	if err := mountOn(under, fm); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EBUSY) {
			return nil, nil
		}
		return nil, err
	}
	return s.reopenMounted(under, dest, fm.check())
}

// bindHost binds the host's directory hostPath (/sys) recursively on
// the handle under, at dest inside the container.
func bindHost(hostPath string, under *os.File, dest string) error {
	src, err := os.OpenFile(hostPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bind the host's %s: %w", hostPath, bareErr(err))
	}
	defer src.Close()
	return bindOn(src, under, true, "the host's "+hostPath, dest)
}

// bindMount binds m.Source (a host path; symlinks in it are followed on the
// host) on dest resolved inside the rootfs, recursively with rbind, then
// remounts it with the flags the options ask for (ro, nosuid...). A bind of
// the host's /sys on /sys (`runc spec --rootless`) is one of these.
func (s *setup) bindMount(m specs.Mount, dest string, o mountOptions) (*os.File, error) {
	if !path.IsAbs(m.Source) {
		return nil, fmt.Errorf("bind %q on %s: the source is not an absolute path", m.Source, dest)
	}
	src, err := os.OpenFile(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bind %s on %s: open source: %w", m.Source, dest, bareErr(err))
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", m.Source, err)
	}
	h, err := s.openOrCreate(dest, st.Mode&unix.S_IFMT == unix.S_IFDIR)
	if err != nil {
		return nil, fmt.Errorf("mount point %w", err)
	}
	defer h.Close()
	if err := bindOn(src, h, o.rec, m.Source, dest); err != nil {
		return nil, err
	}
	top, err := s.reopenMounted(h, dest, sameInode(src))
	if err != nil {
		return nil, err
	}
	if err := remountBind(top, dest, o.flags, o.rec); err != nil {
		top.Close()
		return nil, err
	}
	return top, nil
}

// applyPropagation applies the propagation words (private, rshared...) and
// the recursive attributes (rro, rnosuid...) of a mount's options to the
// new mount top.
func applyPropagation(top *os.File, dest string, o mountOptions) error {
	for _, p := range o.propagation {
		if err := unix.Mount("", fdPath(top), "", p, ""); err != nil {
			return fmt.Errorf("make %s a %s mount: %w", dest, propagationName(p), err)
		}
	}
	if o.attrSet == 0 && o.attrClr == 0 {
		return nil
	}
	attr := unix.MountAttr{Attr_set: o.attrSet, Attr_clr: o.attrClr}
	if err := unix.MountSetattr(int(top.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("mount %s: recursive options (rro, rnosuid...): %w (they need Linux 5.12 or later)", dest, err)
		}
		return fmt.Errorf("mount %s: recursive options (rro, rnosuid...): %w", dest, err)
	}
	return nil
}

// propagationName names a propagation flag for errors.
func propagationName(p uintptr) string {
	for name, f := range propagationFlags {
		if f == p {
			return name
		}
	}
	return fmt.Sprintf("%#x", p)
}

// parentMountPrivate makes the mount that holds the rootfs private when it
// is shared, as runc does for a shared root propagation: pivot_root refuses
// a new root whose parent mount is shared, and the rootfs bound on itself
// would be shared too. The rootfs is a host path cmd/rabbitc chose.
func parentMountPrivate(rootfs string, unbindable bool) error {
	real, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", rootfs, bareErr(err))
	}
	ms, err := mountinfo.GetMounts(mountinfo.ParentsFilter(real))
	if err != nil {
		return fmt.Errorf("find the mount of rootfs %s: %w", rootfs, err)
	}
	var parent *mountinfo.Info
	for _, m := range ms {
		if parent == nil || len(m.Mountpoint) > len(parent.Mountpoint) {
			parent = m
		}
	}
	// Shared (optional "shared:N") or unbindable (no optional field, but
	// the whole tree was just made unbindable): either way, private.
	if parent == nil || !strings.Contains(parent.Optional, "shared:") && !unbindable {
		return nil
	}
	if err := unix.Mount("", parent.Mountpoint, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s (the mount of rootfs %s) private: %w", parent.Mountpoint, rootfs, err)
	}
	return nil
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
