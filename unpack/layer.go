package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"
)

// Options are the settings of one Layer call.
type Options struct {
	// MaxUID and MaxGID are the highest uid and gid mapped in the user
	// namespace Layer runs in (65536 with a 0 + 1..65536 mapping; 0 with a
	// single-id one). An entry owned by a higher id fails with *IDError.
	MaxUID, MaxGID int
	// Notef, when not nil, gets one line per thing left out on purpose: a
	// device node, an xattr that cannot or must not be set, aufs metadata.
	Notef func(format string, args ...any)
}

// Stats count what Layer did.
type Stats struct {
	Entries int   // tar entries read, including skipped ones
	Bytes   int64 // bytes of file contents written
}

// IDError is an entry owned by a uid or gid outside the user namespace's
// mapping. The caller knows the mapping's host side and says which
// /etc/subuid or /etc/subgid line would cover it.
type IDError struct {
	Name           string // the entry's name in the tar
	UID, GID       int
	MaxUID, MaxGID int
}

func (e *IDError) Error() string {
	var what []string
	if e.UID < 0 || e.UID > e.MaxUID {
		what = append(what, fmt.Sprintf("uid %d (highest mapped %d)", e.UID, e.MaxUID))
	}
	if e.GID < 0 || e.GID > e.MaxGID {
		what = append(what, fmt.Sprintf("gid %d (highest mapped %d)", e.GID, e.MaxGID))
	}
	return fmt.Sprintf("%s: owned by %s, not mapped in the user namespace", e.Name, strings.Join(what, " and "))
}

// whPrefix marks a whiteout; whMeta starts aufs metadata names, of which only
// the opaque marker whOpaque means something to us.
const (
	whPrefix = ".wh."
	whMeta   = ".wh..wh."
	whOpaque = ".wh..wh..opq"
)

// copyBuf is the size of the buffer file contents go through.
const copyBuf = 256 << 10

// unpacker is the state of one Layer call.
type unpacker struct {
	root  *root
	opt   Options
	stats Stats
	dirs  dirList
	buf   []byte
}

// Layer extracts the tar stream r (already decompressed) into dir, which must
// exist and should be empty, with every write confined to dir (see the package
// documentation). It reads r to its end. On error, dir holds a partial layer
// that the caller removes.
func Layer(dir string, r io.Reader, o Options) (Stats, error) {
	rt, err := openRoot(dir)
	if err != nil {
		return Stats{}, err
	}
	defer rt.close()
	u := &unpacker{root: rt, opt: o, dirs: newDirList(), buf: make([]byte, copyBuf)}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// ErrInsecurePath (GODEBUG=tarinsecurepath=0) comes with a valid
		// header: the name is checked below like any other.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return u.stats, fmt.Errorf("read tar after %d entries: %w", u.stats.Entries, err)
		}
		u.stats.Entries++
		if err := u.entry(hdr, tr); err != nil {
			return u.stats, err
		}
	}
	if err := u.dirs.apply(rt); err != nil {
		return u.stats, err
	}
	// Whatever follows the end-of-archive blocks belongs to the stream the
	// caller hashes.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return u.stats, fmt.Errorf("read tar padding: %w", err)
	}
	return u.stats, nil
}

func (u *unpacker) notef(format string, args ...any) {
	if u.opt.Notef != nil {
		u.opt.Notef(format, args...)
	}
}

// entry dispatches one tar entry by its name (whiteouts) and type.
func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
	}
	if rel == "" {
		return u.rootEntry(hdr)
	}
	_, base := split(rel)
	if strings.Contains("/"+rel, "/"+whMeta) && base != whOpaque {
		u.notef("%s: aufs metadata skipped", hdr.Name)
		return nil
	}
	if strings.HasPrefix(base, whPrefix) {
		err = u.whiteout(rel)
	} else {
		err = u.create(rel, hdr, r)
	}
	var idErr *IDError
	if err != nil && !errors.As(err, &idErr) {
		return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
	}
	return err
}

// checkIDs refuses an owner the user namespace does not map: chown would fail
// with EINVAL, which says nothing about the fix.
func (u *unpacker) checkIDs(hdr *tar.Header) error {
	if hdr.Uid < 0 || hdr.Uid > u.opt.MaxUID || hdr.Gid < 0 || hdr.Gid > u.opt.MaxGID {
		return &IDError{Name: hdr.Name, UID: hdr.Uid, GID: hdr.Gid, MaxUID: u.opt.MaxUID, MaxGID: u.opt.MaxGID}
	}
	return nil
}

// rootEntry applies a "." entry to the layer directory itself. Anything but a
// directory there would make the layer root a symlink or a file (umoci's
// CVE-2021-29136).
func (u *unpacker) rootEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("tar entry %q: a %s cannot replace the layer root", hdr.Name, typeName(hdr.Typeflag))
	}
	if err := u.checkIDs(hdr); err != nil {
		return err
	}
	fd, err := u.root.open("", unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("tar entry %q: open layer root: %w", hdr.Name, err)
	}
	defer unix.Close(fd)
	if err := u.dirMeta(fd, "", hdr); err != nil {
		return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
	}
	return nil
}

// create makes one non-whiteout entry at rel.
func (u *unpacker) create(rel string, hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		u.notef("%s: device node %d:%d skipped (not allowed in a user namespace)", hdr.Name, hdr.Devmajor, hdr.Devminor)
		return nil
	case tar.TypeLink:
		return u.hardlink(rel, hdr)
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeFifo:
	default:
		u.notef("%s: entry of type %q skipped", hdr.Name, hdr.Typeflag)
		return nil
	}
	if err := u.checkIDs(hdr); err != nil {
		return err
	}
	pfd, err := u.root.openParent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	_, base := split(rel)
	isDir := hdr.Typeflag == tar.TypeDir
	merge, err := replace(pfd, base, isDir)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(pfd, rel, base, hdr, merge)
	case tar.TypeSymlink:
		return u.symlink(pfd, base, hdr)
	case tar.TypeFifo:
		return u.fifo(pfd, base, hdr)
	default:
		return u.file(pfd, base, hdr, r)
	}
}

// replace clears the way for a new entry named base in pfd. A directory over
// a directory merges (it reports true); anything else removes what is there,
// a whole directory tree if need be.
func replace(pfd int, base string, isDir bool) (merge bool, err error) {
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	if err := removeAll(pfd, base); err != nil {
		return false, fmt.Errorf("remove the earlier entry: %w", err)
	}
	return false, nil
}

func (u *unpacker) file(pfd int, base string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	err = u.fill(fd, hdr, r)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		unix.Unlinkat(pfd, base, 0) // no half-written file stays behind
		return err
	}
	return nil
}

// fill writes the contents, then owner, mode, xattrs and times, in that
// order: writing or chown clears setuid bits and file capabilities.
func (u *unpacker) fill(fd int, hdr *tar.Header, r io.Reader) error {
	w := fdWriter(fd)
	n, err := io.CopyBuffer(&w, r, u.buf)
	u.stats.Bytes += n
	if err != nil {
		return fmt.Errorf("write contents (%d of %d bytes): %w", n, hdr.Size, err)
	}
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := u.xattrs(fd, hdr); err != nil {
		return err
	}
	if err := futimens(fd, times(hdr)); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// fdWriter writes to a file descriptor we own. (An *os.File would take the
// tar reader through its ReadFrom and ignore our larger buffer.)
type fdWriter int

func (w *fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(*w), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

func (u *unpacker) dir(pfd int, rel, base string, hdr *tar.Header, merge bool) error {
	if !merge {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	return u.dirMeta(fd, rel, hdr)
}

// dirMeta sets a directory's owner and xattrs now and leaves its mode and
// times for the end.
func (u *unpacker) dirMeta(fd int, rel string, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	if err := u.xattrs(fd, hdr); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	u.dirs.add(rel, st, hdr)
	return nil
}

func (u *unpacker) symlink(pfd int, base string, hdr *tar.Header) error {
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return fmt.Errorf("symlink to %q: %w", hdr.Linkname, err)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	u.noXattrs(hdr, "a symlink")
	return setTimes(pfd, base, hdr)
}

func (u *unpacker) fifo(pfd int, base string, hdr *tar.Header) error {
	if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
		return fmt.Errorf("mkfifo: %w", err)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	// fchmodat follows a symlink, but base is the fifo just made.
	if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	u.noXattrs(hdr, "a fifo")
	return setTimes(pfd, base, hdr)
}

// hardlink links rel to the entry named by hdr.Linkname, resolved in-root
// like any name; linkat without AT_SYMLINK_FOLLOW links a symlink itself,
// never what it points to.
func (u *unpacker) hardlink(rel string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	if target == "" {
		return fmt.Errorf("hardlink to %q: the layer root", hdr.Linkname)
	}
	tdir, tbase := split(target)
	tfd, err := u.root.open(tdir, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	pfd, err := u.root.openParent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	_, base := split(rel)
	if sameFile(tfd, tbase, pfd, base) {
		return nil
	}
	if _, err := replace(pfd, base, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// sameFile reports whether two names are one inode (a link to itself, which
// removing the old name first would break).
func sameFile(afd int, a string, bfd int, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Fstatat(afd, a, &sa, unix.AT_SYMLINK_NOFOLLOW) != nil || unix.Fstatat(bfd, b, &sb, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// whiteout turns ".wh.NAME" into a 0/0 character device NAME, and
// ".wh..wh..opq" into user.overlay.opaque=y on its directory.
func (u *unpacker) whiteout(rel string) error {
	dir, base := split(rel)
	if base == whOpaque {
		return u.opaque(dir)
	}
	name := strings.TrimPrefix(base, whPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q", name)
	}
	pfd, err := u.root.openParent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil // this layer has NAME: a whiteout only hides lower layers
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout %s (mknod 0:0): %w", name, err)
	}
	return nil
}

// opaqueXattr marks a directory opaque for overlayfs mounted with userxattr
// (the only way it is mounted in a user namespace).
const opaqueXattr = "user.overlay.opaque"

func (u *unpacker) opaque(dir string) error {
	pfd, err := u.root.makeDir(dir)
	if err != nil {
		return err
	}
	unix.Close(pfd)
	fd, err := u.root.open(dir, unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s: %w", opaqueXattr, err)
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeReg, tar.TypeRegA:
		return "file"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("entry of type %q", t)
}
