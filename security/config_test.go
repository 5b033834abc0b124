package security

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestDockerCaps(t *testing.T) {
	def := slices.Sorted(slices.Values(defaultCaps))
	with := func(extra ...int) []int { return slices.Sorted(slices.Values(append(slices.Clone(def), extra...))) }
	without := func(drop ...int) []int {
		return slices.DeleteFunc(slices.Clone(def), func(n int) bool { return slices.Contains(drop, n) })
	}
	var all []int
	for n := range capNames {
		all = append(all, n)
	}
	tests := []struct {
		name      string
		add, drop []string
		want      []int
		err       string
	}{
		{name: "default", want: def},
		{name: "add bare", add: []string{"NET_ADMIN"}, want: with(unix.CAP_NET_ADMIN)},
		{name: "add prefixed", add: []string{"CAP_NET_ADMIN"}, want: with(unix.CAP_NET_ADMIN)},
		{name: "add lower case", add: []string{"net_admin", "cap_sys_ptrace"}, want: with(unix.CAP_NET_ADMIN, unix.CAP_SYS_PTRACE)},
		{name: "add one already there", add: []string{"CHOWN"}, want: def},
		{name: "drop", drop: []string{"NET_RAW", "cap_mknod"}, want: without(unix.CAP_NET_RAW, unix.CAP_MKNOD)},
		{name: "add wins over drop", add: []string{"NET_RAW"}, drop: []string{"NET_RAW"}, want: def},
		{name: "drop ALL", drop: []string{"ALL"}, want: nil},
		{name: "drop all lower case", drop: []string{"all"}, want: nil},
		{name: "drop ALL add some", drop: []string{"ALL"}, add: []string{"KILL", "CHOWN"}, want: []int{unix.CAP_CHOWN, unix.CAP_KILL}},
		{name: "add ALL", add: []string{"ALL"}, want: all},
		{name: "add ALL drop some", add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, want: slices.DeleteFunc(slices.Clone(all), func(n int) bool { return n == unix.CAP_SYS_ADMIN })},
		{name: "add ALL drop ALL", add: []string{"ALL"}, drop: []string{"ALL"}, want: all},
		{name: "newest", add: []string{"CHECKPOINT_RESTORE", "BPF", "PERFMON"}, want: with(unix.CAP_CHECKPOINT_RESTORE, unix.CAP_BPF, unix.CAP_PERFMON)},
		{name: "unknown add", add: []string{"NET_FOO"}, err: `cap-add "NET_FOO": unknown capability`},
		{name: "unknown drop", drop: []string{"CAP_"}, err: `cap-drop "CAP_": unknown capability`},
		{name: "empty", add: []string{""}, err: `cap-add "": unknown capability`},
		{name: "number", add: []string{"12"}, err: `cap-add "12": unknown capability`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dockerCaps(tt.add, tt.drop)
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("got %v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestCapNames(t *testing.T) {
	for n, name := range capNames {
		if name == "" {
			t.Errorf("capability %d has no name", n)
		}
	}
	if len(defaultCaps) != 14 {
		t.Errorf("%d default capabilities, want docker's 14", len(defaultCaps))
	}
}

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile.json")
	body := []byte(`{"defaultAction": "SCMP_ACT_ALLOW"}`)
	if err := os.WriteFile(profile, body, 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, maxProfileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	// want says which profile: "default", "unconfined" or "file".
	tests := []struct {
		name    string
		opts    []string
		seccomp string
		nnp     bool
		err     string
	}{
		{name: "none", seccomp: "default", nnp: true},
		{name: "unconfined", opts: []string{"seccomp=unconfined"}, seccomp: "unconfined", nnp: true},
		{name: "legacy colon", opts: []string{"seccomp:unconfined"}, seccomp: "unconfined", nnp: true},
		{name: "file", opts: []string{"seccomp=" + profile}, seccomp: "file", nnp: true},
		{name: "last seccomp wins", opts: []string{"seccomp=" + profile, "seccomp=unconfined"}, seccomp: "unconfined", nnp: true},
		{name: "file wins last", opts: []string{"seccomp=unconfined", "seccomp=" + profile}, seccomp: "file", nnp: true},
		{name: "nnp bare", opts: []string{"no-new-privileges"}, seccomp: "default", nnp: true},
		{name: "nnp false", opts: []string{"no-new-privileges=false"}, seccomp: "default"},
		{name: "nnp legacy false", opts: []string{"no-new-privileges:false"}, seccomp: "default"},
		{name: "nnp true", opts: []string{"no-new-privileges=false", "no-new-privileges=true"}, seccomp: "default", nnp: true},
		{name: "nnp bad bool", opts: []string{"no-new-privileges=maybe"}, err: `security-opt "no-new-privileges=maybe": invalid boolean "maybe" (use seccomp=unconfined`},
		{name: "apparmor", opts: []string{"apparmor=unconfined"}, err: `security-opt "apparmor=unconfined": unknown option (use seccomp=unconfined, seccomp=FILE.json, no-new-privileges or no-new-privileges=true|false)`},
		{name: "label", opts: []string{"label=disable"}, err: `security-opt "label=disable": unknown option`},
		{name: "seccomp empty", opts: []string{"seccomp="}, err: `security-opt "seccomp=": unknown option`},
		{name: "seccomp bare", opts: []string{"seccomp"}, err: `security-opt "seccomp": unknown option`},
		{name: "missing file", opts: []string{"seccomp=" + filepath.Join(dir, "nope.json")}, err: "read seccomp profile: open " + dir + "/nope.json: no such file or directory"},
		{name: "fifo", opts: []string{"seccomp=" + fifo}, err: "read seccomp profile " + fifo + ": not a regular file"},
		{name: "directory", opts: []string{"seccomp=" + dir}, err: "read seccomp profile " + dir + ": not a regular file"},
		{name: "too big", opts: []string{"seccomp=" + big}, err: "read seccomp profile " + big + ": larger than 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFlags(nil, nil, tt.opts)
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.NoNewPrivs != tt.nnp {
				t.Errorf("NoNewPrivs %v, want %v", got.NoNewPrivs, tt.nnp)
			}
			var ok bool
			switch tt.seccomp {
			case "default":
				ok = got.Default && got.Seccomp == nil && got.Filter == nil // compiled later, by Compile
			case "unconfined":
				ok = !got.Default && got.Seccomp == nil && got.Filter == nil
			case "file":
				ok = !got.Default && got.Seccomp != nil && got.Seccomp.DefaultAction == specs.ActAllow && len(got.Filter) > 0
			}
			if !ok {
				t.Errorf("Default %v, Seccomp %v, %d bytes of filter; want the %s profile", got.Default, got.Seccomp, len(got.Filter), tt.seccomp)
			}
		})
	}
	if _, err := ParseFlags([]string{"NET_ADMIN"}, []string{"BOGUS"}, nil); err == nil || !strings.HasPrefix(err.Error(), `cap-drop "BOGUS"`) {
		t.Errorf("bad cap-drop: got %v", err)
	}
}

// TestParseFlagsCapabilitySets: docker's set goes into the bounding,
// effective and permitted sets; inheritable and ambient stay empty, so a
// payload that is not root has no capabilities after execve.
func TestParseFlagsCapabilitySets(t *testing.T) {
	for _, tt := range []struct {
		add, drop []string
		want      []string
	}{
		{nil, nil, capNamesOf(slices.Sorted(slices.Values(defaultCaps)))},
		{[]string{"net_admin"}, []string{"ALL"}, []string{"CAP_NET_ADMIN"}},
		{nil, []string{"ALL"}, []string{}},
	} {
		c, err := ParseFlags(tt.add, tt.drop, nil)
		if err != nil {
			t.Fatal(err)
		}
		caps := c.Capabilities
		if caps == nil {
			t.Fatalf("add %v drop %v: no capabilities", tt.add, tt.drop)
		}
		for name, set := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted} {
			if !slices.Equal(set, tt.want) {
				t.Errorf("add %v drop %v: %s set %v, want %v", tt.add, tt.drop, name, set, tt.want)
			}
		}
		if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
			t.Errorf("add %v drop %v: inheritable %v, ambient %v; want both empty", tt.add, tt.drop, caps.Inheritable, caps.Ambient)
		}
		if len(caps.Bounding) > 0 && &caps.Bounding[0] == &caps.Permitted[0] {
			t.Error("the sets share one array: changing one would change the others")
		}
		if err := c.Check(); err != nil {
			t.Errorf("add %v drop %v: Check: %v", tt.add, tt.drop, err)
		}
	}
}

// TestCheck: an OCI config's capability names must be known, in any of
// the five sets; those this kernel lacks are skipped later.
func TestCheck(t *testing.T) {
	good := func() *specs.LinuxCapabilities {
		return &specs.LinuxCapabilities{
			Bounding: []string{"CAP_CHOWN", "CAP_NET_ADMIN"}, Effective: []string{"CAP_CHOWN"},
			Permitted: []string{"CAP_CHOWN"}, Inheritable: []string{"CAP_CHOWN"}, Ambient: []string{"CAP_CHOWN"},
		}
	}
	if err := (Config{Capabilities: good()}).Check(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	if err := (Config{}).Check(); err != nil {
		t.Fatalf("no capabilities: %v", err)
	}
	var all []string
	for n := range capNames {
		all = append(all, capName(n))
	}
	if err := (Config{Capabilities: &specs.LinuxCapabilities{Bounding: all, Ambient: all}}).Check(); err != nil {
		t.Fatalf("every capability this build knows, some perhaps beyond the kernel's: %v", err)
	}
	for _, tt := range []struct {
		set  func(*specs.LinuxCapabilities) *[]string
		name string
		want string
	}{
		{func(c *specs.LinuxCapabilities) *[]string { return &c.Bounding }, "CAP_FOO", `capability "CAP_FOO": unknown in the bounding set (use a name from capabilities(7)`},
		{func(c *specs.LinuxCapabilities) *[]string { return &c.Effective }, "NET_ADMIN", `capability "NET_ADMIN": unknown in the effective set`},
		{func(c *specs.LinuxCapabilities) *[]string { return &c.Permitted }, "cap_chown", `capability "cap_chown": unknown in the permitted set`},
		{func(c *specs.LinuxCapabilities) *[]string { return &c.Inheritable }, "CAP_", `capability "CAP_": unknown in the inheritable set`},
		{func(c *specs.LinuxCapabilities) *[]string { return &c.Ambient }, "", `capability "": unknown in the ambient set`},
	} {
		caps := good()
		p := tt.set(caps)
		*p = append(*p, tt.name)
		err := Config{Capabilities: caps}.Check()
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want %q", tt.name, err, tt.want)
		}
	}
	bad := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: "SCMP_ACT_FOO"}}}
	if err := (Config{Seccomp: bad}).Check(); err == nil || !strings.HasPrefix(err.Error(), `seccomp profile: syscalls[0] [read]: unknown action "SCMP_ACT_FOO"`) {
		t.Errorf("bad seccomp action: got %v", err)
	}
}

// TestResolveCapsSkipsNewerCaps: a config written for a newer kernel runs
// on this one without what this one does not have, as with runc.
func TestResolveCapsSkipsNewerCaps(t *testing.T) {
	s, err := resolveCaps(&specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN", "CAP_BPF"}, Ambient: []string{"CAP_CHECKPOINT_RESTORE"}}, unix.CAP_AUDIT_READ)
	if err != nil {
		t.Fatal(err)
	}
	if s.bounding != 1<<unix.CAP_CHOWN || s.ambient != 0 {
		t.Fatalf("bounding %#x ambient %#x, want %#x and 0", s.bounding, s.ambient, 1<<unix.CAP_CHOWN)
	}
}

// FuzzParseSecurityOpt fuzzes the --cap-add, --cap-drop and --security-opt
// parser. Profile files are kept out (a fuzzed path could name any file);
// FuzzSeccompProfile covers their content.
func FuzzParseSecurityOpt(f *testing.F) {
	for _, s := range []string{"seccomp=unconfined", "seccomp:unconfined", "no-new-privileges", "no-new-privileges=false",
		"no-new-privileges:1", "apparmor=x", "seccomp=", "=", ":", ""} {
		f.Add(s, "NET_ADMIN", "ALL")
	}
	f.Add("no-new-privileges=true", "cap_sys_admin", "cap_chown")
	f.Fuzz(func(t *testing.T, opt, capAdd, capDrop string) {
		var probe flagOpts
		if probe.apply(opt) == nil && probe.seccomp != "" && probe.seccomp != SeccompUnconfined {
			t.Skip("names a profile file")
		}
		c, err := ParseFlags([]string{capAdd}, []string{capDrop}, []string{opt})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("accepted config fails Check: %v", err)
		}
		if c.Seccomp != nil {
			t.Fatalf("seccomp profile %+v accepted", c.Seccomp)
		}
	})
}

// FuzzSeccompProfile fuzzes the profile decoder and the BPF compiler: any
// profile ParseFlags accepts compiles to a program the kernel's checks
// would take.
func FuzzSeccompProfile(f *testing.F) {
	f.Add([]byte(`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}`))
	f.Add([]byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
		"args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 255, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]}]}`))
	f.Add([]byte(`{"defaultAction": "SCMP_ACT_KILL", "syscalls": [{"name": "getpid", "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_KILL"]}}]}`))
	path := filepath.Join(f.TempDir(), "p.json")
	f.Fuzz(func(t *testing.T, profile []byte) {
		if err := os.WriteFile(path, profile, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ParseFlags(nil, nil, []string{"seccomp=" + path})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		flt, err := buildFilter(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(flt.prog); err != nil {
			t.Fatal(err)
		}
		run(t, flt.prog, call{nr: 0, arch: nativeArch})
	})
}

func TestCompileCarriesFilter(t *testing.T) {
	c, err := ParseFlags(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := buildFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Compile(); err != nil {
		t.Fatal(err)
	}
	if c.Seccomp == nil || !c.Default {
		t.Fatalf("Compile did not resolve the default profile: Seccomp %v, Default %v", c.Seccomp, c.Default)
	}
	got, err := filterFromBytes(c.Filter, c.FilterFlags)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.prog) == 0 || !reflect.DeepEqual(got.prog, want.prog) || got.flags != want.flags {
		t.Fatalf("the filter in the config (%d instructions) is not the default profile's (%d)", len(got.prog), len(want.prog))
	}
	u, err := ParseFlags(nil, nil, []string{"seccomp=unconfined"})
	if err == nil {
		err = u.Compile()
	}
	if err != nil || len(u.Filter) != 0 {
		t.Fatalf("unconfined carries a filter: %d bytes, %v", len(u.Filter), err)
	}
	if _, err := filterFromBytes([]byte{1, 2, 3}, 0); err == nil {
		t.Fatal("a truncated program was accepted")
	}
}

// TestHardeningOnlyWithDefault: rabbitc's own rules come with its default
// profile; an OCI config's profile is compiled exactly as given, so what
// it allows stays allowed.
func TestHardeningOnlyWithDefault(t *testing.T) {
	allowAll := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64}}
	caps := &specs.LinuxCapabilities{Bounding: []string{"CAP_SYS_ADMIN"}}
	probes := []struct {
		sc   string
		args [6]uint64
	}{
		{"ioctl", [6]uint64{1, unix.TIOCSTI}},
		{"ioctl", [6]uint64{1, unix.TIOCLINUX}},
		{"unshare", [6]uint64{unix.CLONE_NEWUSER}},
		{"clone", [6]uint64{unix.CLONE_NEWUSER}},
		{"clone3", [6]uint64{}},
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"oci", Config{Capabilities: caps, Seccomp: allowAll}, "allow"},
		{"default", Config{Capabilities: caps, Default: true}, "!allow"},
		{"default resolved", Config{Capabilities: caps, Default: true, Seccomp: allowAll}, "!allow"},
	} {
		c := tt.cfg
		if err := c.Compile(); err != nil {
			t.Fatal(err)
		}
		f, err := filterFromBytes(c.Filter, c.FilterFlags)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range probes {
			got := actName(run(t, f.prog, call{nr: nr(t, p.sc), arch: nativeArch, args: p.args}))
			if not, neg := strings.CutPrefix(tt.want, "!"); neg && got == not || !neg && got != tt.want {
				t.Errorf("%s: %s%v = %s, want %s", tt.name, p.sc, p.args, got, tt.want)
			}
		}
	}
}
