// Package unpack owns turning one image layer (an OCI or docker tar stream,
// gzip, zstd or plain) into a directory that serves as an overlayfs lower
// layer: Decompress sniffs the compression, Layer extracts the tar.
//
// It leaves alone where layers are stored, digests (the caller hashes the
// stream it passes in; Layer reads it to EOF so the hash covers all of it),
// user namespaces (the caller runs Layer as root of a user namespace with the
// containers' mappings) and mounting the overlay.
//
// Contract used by cmd/rabbitc, in a stage that is root of the user namespace:
//
//	rc, err := unpack.Decompress(blob)                   // gzip, zstd or plain tar
//	st, err := unpack.Layer(tmpdir, io.TeeReader(rc, diffID), unpack.Options{MaxUID: 65536, MaxGID: 65536, Notef: note})
//	var idErr *unpack.IDError; errors.As(err, &idErr)  // an id the mapping lacks: name the /etc/subuid line
//
// # Tar entries are untrusted
//
// Every name is cleaned lexically: leading slashes are dropped (absolute
// names land inside the layer, as docker does) and a name that climbs above
// the root with ".." is an error. The directory holding an entry is opened
// with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV) on a
// handle of the layer directory, so a symlink met on the way (one made by an
// earlier entry: "s -> /", "s -> ..") is followed as if the layer were "/"
// and never out of it. The last component is created with *at calls on that
// handle that never follow it: O_CREAT|O_EXCL|O_NOFOLLOW for files, mkdirat,
// symlinkat, mknodat, fchownat and utimensat with AT_SYMLINK_NOFOLLOW. A
// symlink's target is stored as it is (it is only a value), but no later
// write follows it out. A hardlink's target is cleaned and resolved in-root
// the same way and linked with linkat on the two handles, without following
// a symlink at the target. An entry over an existing name replaces it
// (a directory over a directory merges; anything else first removes what is
// there, a directory tree with unlinkat on handles opened O_NOFOLLOW), and
// an entry for the layer root "." other than a directory is refused (umoci's
// CVE-2021-29136). Missing parent directories are made 0755 and owned by the
// unpacking user (the layer's own entry for them, when it comes, sets their
// metadata).
//
// Go's archive/tar reads PAX and GNU long names and links, and bounds the
// memory of PAX headers and sparse maps (CVE-2022-2879, CVE-2025-58183 are
// fixed in the Go this module needs). A declared size larger than the data is
// an error, and the partial file is removed.
//
// # Whiteouts
//
// ".wh.NAME" becomes an overlayfs whiteout: a character device 0/0 named NAME.
// Creating a 0/0 device needs no CAP_MKNOD since Linux 5.8 ("vfs: allow
// unprivileged whiteout creation"), so it works as root of a user namespace,
// where overlayfs with userxattr (Linux 5.11) reads it; fuse-overlayfs reads
// it too. (Linux 6.7 added a second form, an empty file with the
// overlay.whiteout xattr in a directory marked overlay.opaque=x, meant for
// nested overlays; it is not needed here and older kernels ignore it.) A
// whiteout only hides lower layers: if NAME is already in this layer it stays
// (OCI image spec, "Whiteouts"). ".wh..wh..opq" sets user.overlay.opaque=y on
// its directory, the opaque marker overlayfs reads with userxattr. Other
// ".wh..wh." names (aufs metadata) are skipped with a note.
//
// # Metadata
//
// Owners are set with fchown/fchownat (AT_SYMLINK_NOFOLLOW); an owner above
// Options.MaxUID or MaxGID is an *IDError. Modes, with setuid, setgid and
// sticky bits, are set after the owner (chown clears them). Extended
// attributes from PAX records (SCHILY.xattr.*) go on files and directories
// after the mode: user.* and security.capability (as root of a user
// namespace the kernel stores a v2 file capability as v3, bound to the
// namespace's root) and system.posix_acl_*. Skipped with a note: trusted.*
// and other security.* (refused in a user namespace) and user.overlay.*,
// which would let a layer forge overlayfs metadata (opaque, redirect,
// metacopy) in its own or another layer's view. Access and modification times
// are set last; a directory's mode and times are applied after all entries,
// since entries written into it change its mtime and a read-only mode would
// stop them. Device nodes are skipped with a note (mknod is refused in a user
// namespace); fifos are made.
package unpack
