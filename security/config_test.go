package security

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCapabilities(t *testing.T) {
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
			got, err := Config{CapAdd: tt.add, CapDrop: tt.drop}.Capabilities()
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

func TestParseConfig(t *testing.T) {
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
	tests := []struct {
		name string
		opts []string
		want Config
		err  string
	}{
		{name: "none", want: Config{NoNewPrivs: true}},
		{name: "unconfined", opts: []string{"seccomp=unconfined"}, want: Config{Seccomp: "unconfined", NoNewPrivs: true}},
		{name: "legacy colon", opts: []string{"seccomp:unconfined"}, want: Config{Seccomp: "unconfined", NoNewPrivs: true}},
		{name: "file", opts: []string{"seccomp=" + profile}, want: Config{Seccomp: profile, SeccompJSON: body, NoNewPrivs: true}},
		{name: "last seccomp wins", opts: []string{"seccomp=" + profile, "seccomp=unconfined"}, want: Config{Seccomp: "unconfined", NoNewPrivs: true}},
		{name: "nnp bare", opts: []string{"no-new-privileges"}, want: Config{NoNewPrivs: true}},
		{name: "nnp false", opts: []string{"no-new-privileges=false"}, want: Config{}},
		{name: "nnp legacy false", opts: []string{"no-new-privileges:false"}, want: Config{}},
		{name: "nnp true", opts: []string{"no-new-privileges=false", "no-new-privileges=true"}, want: Config{NoNewPrivs: true}},
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
			got, err := ParseConfig(nil, nil, tt.opts)
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Seccomp != tt.want.Seccomp || string(got.SeccompJSON) != string(tt.want.SeccompJSON) || got.NoNewPrivs != tt.want.NoNewPrivs {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := ParseConfig([]string{"NET_ADMIN"}, []string{"BOGUS"}, nil); err == nil || !strings.HasPrefix(err.Error(), `cap-drop "BOGUS"`) {
		t.Errorf("bad cap-drop: got %v", err)
	}
	c, err := ParseConfig([]string{"net_admin"}, []string{"ALL"}, nil)
	if err != nil || !slices.Equal(c.CapAdd, []string{"net_admin"}) || !slices.Equal(c.CapDrop, []string{"ALL"}) {
		t.Errorf("got %+v, %v", c, err)
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
		var probe Config
		if probe.applySecurityOpt(opt) == nil && probe.Seccomp != "" && probe.Seccomp != SeccompUnconfined {
			t.Skip("names a profile file")
		}
		c, err := ParseConfig([]string{capAdd}, []string{capDrop}, []string{opt})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if _, err := c.Capabilities(); err != nil {
			t.Fatalf("accepted config has bad capabilities: %v", err)
		}
		if c.Seccomp != "" && c.Seccomp != SeccompUnconfined {
			t.Fatalf("seccomp %q accepted", c.Seccomp)
		}
	})
}

// FuzzSeccompProfile fuzzes the profile decoder and the BPF compiler: any
// profile ParseConfig accepts compiles to a program the kernel's checks
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
		c, err := ParseConfig(nil, nil, []string{"seccomp=" + path})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		caps, _ := c.Capabilities()
		flt, err := buildFilter(c, caps)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(flt.prog); err != nil {
			t.Fatal(err)
		}
		run(t, flt.prog, call{nr: 0, arch: nativeArch})
	})
}

func TestParseConfigCarriesCompiledFilter(t *testing.T) {
	c, err := ParseConfig(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Compile(); err != nil {
		t.Fatal(err)
	}
	caps, _ := c.Capabilities()
	want, err := buildFilter(Config{NoNewPrivs: true}, caps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := filterFromBytes(c.Filter, c.FilterFlags)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.prog) == 0 || !reflect.DeepEqual(got.prog, want.prog) || got.flags != want.flags {
		t.Fatalf("the filter in the config (%d instructions) is not the default profile's (%d)", len(got.prog), len(want.prog))
	}
	u, err := ParseConfig(nil, nil, []string{"seccomp=unconfined"})
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
