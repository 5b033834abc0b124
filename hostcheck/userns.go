package hostcheck

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kernel names the kernel and whether it has user namespaces at all.
func Kernel() Check {
	rel := KernelRelease()
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return rootFix(Error, "kernel", "Linux "+rel+" without user namespaces (/proc/self/ns/user: "+errText(err)+")",
			"boot a kernel built with CONFIG_USER_NS=y (every distribution kernel is)")
	}
	return ok("kernel", "Linux "+rel+", with user namespaces")
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// readSysctl returns a sysctl's value by its dotted name, and whether the
// kernel has it.
func readSysctl(name string) (string, bool) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// setSysctl is the fix that sets a sysctl now and at every boot.
func setSysctl(name, value string) string {
	return fmt.Sprintf("sysctl -w %s=%s && echo %s=%s >> /etc/sysctl.d/50-rabbitc.conf", name, value, name, value)
}

// userNamespaceSysctls checks the three settings that can forbid an
// unprivileged user namespace.
func userNamespaceSysctls(exe string) []Check {
	clone, hasClone := readSysctl(sysctlClone)
	max, hasMax := readSysctl(sysctlMax)
	aa, hasAA := readSysctl(sysctlAppArmor)
	profile := ""
	if aa == "1" {
		profile = findProfile(appArmorDir, exe)
	}
	return []Check{unprivilegedClone(clone, hasClone), maxUserNamespaces(max, hasMax), appArmor(aa, hasAA, exe, profile)}
}

const (
	sysctlClone    = "kernel.unprivileged_userns_clone"
	sysctlMax      = "user.max_user_namespaces"
	sysctlAppArmor = "kernel.apparmor_restrict_unprivileged_userns"
)

// unprivilegedClone judges Debian's and Ubuntu's switch (absent upstream).
func unprivilegedClone(v string, present bool) Check {
	switch {
	case !present:
		return ok(sysctlClone, "not in this kernel (it allows unprivileged user namespaces without it)")
	case v == "0":
		return rootFix(Error, sysctlClone, "0: only root may create user namespaces", setSysctl(sysctlClone, "1"))
	}
	return ok(sysctlClone, v)
}

// maxUserNamespaces judges the per-user limit on user namespaces.
func maxUserNamespaces(v string, present bool) Check {
	switch {
	case !present:
		return rootFix(Error, sysctlMax, "not in this kernel (no user namespaces?)", "boot a kernel built with CONFIG_USER_NS=y")
	case v == "0":
		return rootFix(Error, sysctlMax, "0: no user may create a user namespace", setSysctl(sysctlMax, "15000"))
	}
	return ok(sysctlMax, v)
}

// appArmor judges Ubuntu's (23.10+) restriction: with it, only programs
// that an AppArmor profile allows "userns" may create user namespaces.
// profile is the file in /etc/apparmor.d that allows it to exe, if any.
func appArmor(v string, present bool, exe, profile string) Check {
	switch {
	case !present:
		return ok(sysctlAppArmor, "not in this kernel (no AppArmor restriction on user namespaces)")
	case v != "1":
		return ok(sysctlAppArmor, v)
	case profile != "":
		return ok(sysctlAppArmor, "1, and "+profile+" lets "+exe+" create user namespaces")
	}
	return rootFix(Error, sysctlAppArmor, "1, and no profile in "+appArmorDir+" lets "+exe+" create user namespaces",
		profileFix(exe))
}

const appArmorDir = "/etc/apparmor.d"

// profileFix writes and loads a profile that lets exe create user
// namespaces and confines it no further, as Ubuntu's own profiles for
// other programs do.
func profileFix(exe string) string {
	return fmt.Sprintf(`printf 'abi <abi/4.0>,\ninclude <tunables/global>\nprofile rabbitc %s flags=(unconfined) {\n  userns,\n}\n' > %s/rabbitc && apparmor_parser -r %s/rabbitc`,
		exe, appArmorDir, appArmorDir)
}

// findProfile returns the file of dir (not its subdirectories) that holds
// a profile allowing exe to create user namespaces.
func findProfile(dir, exe string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		p := dir + "/" + e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(b) < 1<<20 && profileCovers(string(b), exe) {
			return p
		}
	}
	return ""
}

// profileCovers reports whether an AppArmor profile text names exe as a
// profile's attachment ("profile NAME /path ... {" or "/path ... {") and
// has a "userns," rule. Globs in attachments are not expanded.
func profileCovers(text, exe string) bool {
	names, userns := false, false
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(strings.ReplaceAll(line, "{", " { "))
		if len(f) > 0 && (f[0] == "userns," || len(f) > 1 && f[0] == "allow" && f[1] == "userns,") {
			userns = true
		}
		attaches := len(f) > 0 && f[0] == exe || len(f) > 2 && f[0] == "profile" && f[2] == exe
		if attaches && slices.Contains(f, "{") {
			names = true
		}
	}
	return names && userns
}

// UserNamespace creates one: it starts the probe in a new user namespace,
// which exits at once. When that fails, a setting checked before (sys)
// that is in error gives the fix.
func UserNamespace(probe []string, sys []Check) Check {
	cmd := probeCommand(probe, "userns")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	err := cmd.Run()
	if err == nil {
		return ok("userns", "created one (clone CLONE_NEWUSER as uid "+fmt.Sprint(os.Getuid())+")")
	}
	detail := "clone CLONE_NEWUSER: " + errText(err)
	for _, c := range sys {
		if c.Status == Error {
			return rootFix(Error, "userns", detail+" ("+c.Name+" above)", c.Fix)
		}
	}
	return userFix(Error, "userns", detail+usernsWhy(err), "")
}

// usernsWhy explains a refused clone that no setting explains.
func usernsWhy(err error) string {
	switch {
	case errors.Is(err, unix.EPERM):
		return " (a seccomp filter or the container rabbitc runs in forbids it)"
	case errors.Is(err, unix.EUSERS):
		return " (32 nested user namespaces already)"
	case errors.Is(err, unix.ENOSPC):
		return " (the user namespace limit of this user, or of an outer namespace, is reached)"
	}
	return ""
}
