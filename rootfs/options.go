package rootfs

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOptions is a mount's option list (runtime-spec "options", fstab
// style) taken apart as runc does: mount(2) flags, a bind, propagation
// changes, recursive attributes and what is left for the file system's data.
type mountOptions struct {
	flags       uintptr   // MS_* to set (MS_BIND and MS_REC not included: see bind, rec)
	bind, rec   bool      // "bind", "rbind"
	propagation []uintptr // MS_SHARED, MS_PRIVATE... (| MS_REC), applied in order after the mount
	attrSet     uint64    // MOUNT_ATTR_* set recursively ("rro", "rnosuid"...), with mount_setattr
	attrClr     uint64
	data        string // the options mount(2) does not know, in order, comma-separated
	idmap       bool   // "idmap", "ridmap": an ID-mapped mount, which rabbitc cannot make
}

// mountFlags are runc's flag words: each sets or clears one mount(2) flag.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"acl":           {false, unix.MS_POSIXACL},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noacl":         {true, unix.MS_POSIXACL},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

// propagationFlags are the propagation words, for mounts and for
// linux.rootfsPropagation.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// recursiveAttrs are the runtime-spec's recursive words ("rro"...), which
// mount_setattr(2) applies to the mount and every mount below it.
var recursiveAttrs = map[string]struct {
	clear bool
	attr  uint64
}{
	"rro":            {false, unix.MOUNT_ATTR_RDONLY},
	"rrw":            {true, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":        {false, unix.MOUNT_ATTR_NOSUID},
	"rsuid":          {true, unix.MOUNT_ATTR_NOSUID},
	"rnodev":         {false, unix.MOUNT_ATTR_NODEV},
	"rdev":           {true, unix.MOUNT_ATTR_NODEV},
	"rnoexec":        {false, unix.MOUNT_ATTR_NOEXEC},
	"rexec":          {true, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":    {false, unix.MOUNT_ATTR_NODIRATIME},
	"rdiratime":      {true, unix.MOUNT_ATTR_NODIRATIME},
	"rnosymfollow":   {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rsymfollow":     {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rnoatime":       {false, unix.MOUNT_ATTR_NOATIME},
	"ratime":         {true, unix.MOUNT_ATTR_NOATIME},
	"rstrictatime":   {false, unix.MOUNT_ATTR_STRICTATIME},
	"rnostrictatime": {true, unix.MOUNT_ATTR_STRICTATIME},
	"rrelatime":      {false, unix.MOUNT_ATTR_RELATIME},
	"rnorelatime":    {true, unix.MOUNT_ATTR_RELATIME},
}

// atimeAttrs are the recursive atime words: setting one replaces the atime
// mode, which mount_setattr wants cleared as a whole (MOUNT_ATTR__ATIME).
var atimeAttrs = map[string]bool{"rnoatime": true, "rstrictatime": true, "rrelatime": true}

// parseMountOptions takes a runtime-spec option list apart, as runc's
// parseMountOptions does. Words it does not know go to the data string for
// the file system (size=, mode=, gid=, userxattr...), in order; "tmpcopyup"
// (runc copies the mount point's old content into a new tmpfs; rabbitc does
// not) and "X-*" (userspace mount(8) options) are dropped.
func parseMountOptions(options []string) mountOptions {
	var o mountOptions
	var data []string
	for _, w := range options {
		if f, ok := mountFlags[w]; ok {
			if f.clear {
				o.flags &^= f.flag
			} else {
				o.flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[w]; ok {
			o.propagation = append(o.propagation, p)
			continue
		}
		if a, ok := recursiveAttrs[w]; ok {
			if a.clear {
				o.attrClr |= a.attr
				o.attrSet &^= a.attr
			} else {
				o.attrSet |= a.attr
				o.attrClr &^= a.attr
			}
			if atimeAttrs[w] {
				o.attrClr |= unix.MOUNT_ATTR__ATIME
			}
			continue
		}
		switch {
		case w == "bind":
			o.bind = true
		case w == "rbind":
			o.bind, o.rec = true, true
		case w == "idmap" || w == "ridmap":
			o.idmap = true
		case w == "tmpcopyup" || strings.HasPrefix(w, "X-") || w == "":
		default:
			data = append(data, w)
		}
	}
	o.data = strings.Join(data, ",")
	return o
}

// parsePropagation reads linux.rootfsPropagation; "" is rabbitc's default,
// a recursive slave, as runc's.
func parsePropagation(s string) (uintptr, error) {
	if s == "" {
		return unix.MS_SLAVE | unix.MS_REC, nil
	}
	p, ok := propagationFlags[s]
	if !ok {
		return 0, fmt.Errorf("root propagation %q: not one of shared, slave, private, unbindable and their r- forms", s)
	}
	return p, nil
}

// MountOptionNames are the mount options Setup knows, sorted (the runtime
// spec's features document); others go to the file system as data.
func MountOptionNames() []string {
	var out []string
	for name := range mountFlags {
		out = append(out, name)
	}
	for name := range propagationFlags {
		out = append(out, name)
	}
	for name := range recursiveAttrs {
		out = append(out, name)
	}
	out = append(out, "bind", "rbind", "tmpcopyup")
	sort.Strings(out)
	return slices.Compact(out)
}
