package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ociBundle writes a bundle for runtime ("crun" or "runc") from the
// runtime's own `spec --rootless`, adjusted to be equivalent to rabbitc:
// the busybox rootfs, args, no terminal, the same namespaces (its own network
// namespace when ownNet), the subuid maps rabbitc writes with newuidmap, and
// rabbitc's defaults of security: docker's 14 capabilities and docker's
// default seccomp profile (moby/profiles, the one rabbitc compiles), which
// `spec --rootless` leaves out. With ownNet false it is the bundle runc runs
// inside RootlessKit, which shares RootlessKit's user and network namespaces,
// as rootless Docker does.
func (e *env) ociBundle(runtime string, args []string, ownNet bool) (string, error) {
	return e.ociBundleSeccomp(runtime, args, ownNet, true)
}

// ociBundleSeccomp is ociBundle, without docker's seccomp profile and
// capabilities when withSeccomp is false (the bundle as `spec --rootless`
// makes it, for the table's "no seccomp" row).
func (e *env) ociBundleSeccomp(runtime string, args []string, ownNet, withSeccomp bool) (string, error) {
	name := runtime
	if !ownNet {
		name += "-shared"
	}
	if !withSeccomp {
		name += "-noseccomp"
	}
	name += "-" + strings.ReplaceAll(filepath.Base(args[0]), "/", "")
	dir := filepath.Join(e.work, "bundles", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(dir, "config.json"))
	cmd := exec.Command(runtime, "spec", "--rootless")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s spec --rootless: %w: %s", runtime, err, oneLine(string(out)))
	}
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("parse %s: %w", path, err)
	}
	proc := c["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	c["root"] = map[string]any{"path": e.rootfs, "readonly": false}
	linux := c["linux"].(map[string]any)
	if withSeccomp {
		sc, err := dockerSeccomp()
		if err != nil {
			return "", err
		}
		linux["seccomp"] = sc
		proc["capabilities"] = map[string]any{"bounding": dockerCaps, "effective": dockerCaps, "permitted": dockerCaps}
	}
	want := []string{"pid", "ipc", "uts", "mount", "cgroup"}
	if ownNet {
		want = append(want, "user", "network")
	}
	var nss []any
	for _, t := range want {
		nss = append(nss, map[string]any{"type": t})
	}
	linux["namespaces"] = nss
	delete(linux, "resources")
	// Nobody in this benchmark uses cgroups: rabbitc does not create any.
	var mounts []any
	for _, m := range c["mounts"].([]any) {
		if m.(map[string]any)["destination"] != "/sys/fs/cgroup" {
			mounts = append(mounts, m)
		}
	}
	c["mounts"] = mounts
	if ownNet {
		maps, err := e.idMaps()
		if err != nil {
			return "", err
		}
		linux["uidMappings"] = maps[0]
		linux["gidMappings"] = maps[1]
	} else {
		delete(linux, "uidMappings")
		delete(linux, "gidMappings")
	}
	out, err := json.MarshalIndent(c, "", "\t")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(path, out, 0o644)
}

// idMaps returns the uid and gid maps rabbitc writes: the user as root,
// and the user's first subordinate range from 1 on.
func (e *env) idMaps() ([2][]any, error) {
	var out [2][]any
	u, err := user.Current()
	if err != nil {
		return out, err
	}
	g, err := user.LookupGroupId(strconv.Itoa(e.gid))
	if err != nil {
		return out, err
	}
	for i, f := range []struct{ file, name, id string }{
		{"/etc/subuid", u.Username, u.Uid},
		{"/etc/subgid", g.Name, g.Gid},
	} {
		start, count, err := subRange(f.file, f.name, f.id)
		if err != nil {
			return out, err
		}
		hostID, _ := strconv.Atoi(f.id)
		out[i] = []any{
			map[string]any{"containerID": 0, "hostID": hostID, "size": 1},
			map[string]any{"containerID": 1, "hostID": start, "size": count},
		}
	}
	return out, nil
}

func subRange(file, name, id string) (int, int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(p) == 3 && (p[0] == name || p[0] == id) {
			s, err1 := strconv.Atoi(p[1])
			n, err2 := strconv.Atoi(p[2])
			if err1 == nil && err2 == nil {
				return s, n, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no range for %s in %s (add \"%s:100000:65536\")", name, file, name)
}

// dockerCaps are docker's default capabilities, rabbitc's too.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// dockerSeccomp is docker's default seccomp profile for dockerCaps, in the
// OCI form (linux.seccomp of config.json).
func dockerSeccomp() (any, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: dockerCaps}}}
	sc, err := seccomp.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("docker's default seccomp profile: %w", err)
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return nil, err
	}
	var v any
	return v, json.Unmarshal(b, &v)
}
