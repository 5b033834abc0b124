package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSlirpArgs(t *testing.T) {
	all := &Features{EnableSandbox: true, EnableSeccomp: true, DisableHostLoopback: true, Path: "/usr/bin/slirp4netns"}
	for _, tc := range []struct {
		name string
		cfg  Config
		feat *Features
		want string
	}{
		{"defaults", Config{}, all,
			"--configure --mtu=65520 --ready-fd=3 --exit-fd=4 --disable-host-loopback --enable-sandbox --enable-seccomp 4242 tap0"},
		{"mtu", Config{MTU: 1500}, all,
			"--configure --mtu=1500 --ready-fd=3 --exit-fd=4 --disable-host-loopback --enable-sandbox --enable-seccomp 4242 tap0"},
		{"host loopback", Config{AllowHostLoopback: true}, all,
			"--configure --mtu=65520 --ready-fd=3 --exit-fd=4 --enable-sandbox --enable-seccomp 4242 tap0"},
		{"nothing optional", Config{MTU: 9000, AllowHostLoopback: true, NoSlirpSandbox: true, NoSlirpSeccomp: true}, &Features{},
			"--configure --mtu=9000 --ready-fd=3 --exit-fd=4 4242 tap0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := slirpArgs(4242, tc.cfg, tc.feat)
			if want := strings.Fields(tc.want); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("slirpArgs = %q, %v\nwant        %q", got, err, want)
			}
		})
	}
	// What confine refuses, slirpArgs refuses too: no silent downgrade if
	// StartSlirp is called without Check.
	old := &Features{DisableHostLoopback: true, Path: "/usr/bin/slirp4netns", Version: "0.4.0-beta.1"}
	if got, err := slirpArgs(4242, Config{}, old); err == nil {
		t.Errorf("slirpArgs on a slirp4netns without --enable-sandbox = %q, want an error", got)
	}
}

// TestConfine is the decision of how slirp4netns is confined: every option
// it lacks is refused unless the user let that one go, and running without
// the sandbox or seccomp always says so in a warning.
func TestConfine(t *testing.T) {
	const path = "/usr/bin/slirp4netns"
	all := Features{EnableSandbox: true, EnableSeccomp: true, DisableHostLoopback: true, Path: path}
	with := func(f func(*Features)) *Features {
		feat := all
		feat.Version = "0.4.0-beta.1"
		f(&feat)
		return &feat
	}
	noSandbox := with(func(f *Features) { f.EnableSandbox = false })
	noSeccomp := with(func(f *Features) { f.EnableSeccomp = false })
	beta1 := with(func(f *Features) { f.EnableSandbox, f.EnableSeccomp = false, false })
	noLoopback := with(func(f *Features) { f.DisableHostLoopback = false })
	noFilter := with(func(f *Features) { f.NoSeccompFilter = true; f.Version = "1.2.0" })
	unknown := with(func(f *Features) { f.EnableSeccomp = false; f.Version = "" })
	for _, tc := range []struct {
		name      string
		cfg       Config
		feat      *Features
		args      string
		warn, err string
	}{
		{"all there", Config{}, &all, "--disable-host-loopback --enable-sandbox --enable-seccomp", "", ""},
		{"host loopback allowed", Config{AllowHostLoopback: true}, &all, "--enable-sandbox --enable-seccomp", "", ""},

		{"lacks sandbox", Config{}, noSandbox, "", "",
			"slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-sandbox (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false to run without it)"},
		{"lacks seccomp", Config{}, noSeccomp, "", "",
			"slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-seccomp (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-seccomp=false to run without it)"},
		{"lacks both", Config{}, beta1, "", "",
			"slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-sandbox and --enable-seccomp (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false --security-opt slirp4netns-seccomp=false to run without them)"},
		{"lacks both, one let go", Config{NoSlirpSeccomp: true}, beta1, "", "",
			"slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-sandbox (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false to run without it)"},
		{"lacks seccomp, version unknown", Config{}, unknown, "", "",
			"slirp4netns of unknown version (/usr/bin/slirp4netns) lacks --enable-seccomp (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-seccomp=false to run without it)"},

		{"lacks seccomp, let go", Config{NoSlirpSeccomp: true}, noSeccomp, "--disable-host-loopback --enable-sandbox",
			"slirp4netns runs without --enable-seccomp (--security-opt slirp4netns-seccomp=false): slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-seccomp (install slirp4netns >= 0.4.0 to have it)", ""},
		{"lacks sandbox, let go", Config{NoSlirpSandbox: true}, noSandbox, "--disable-host-loopback --enable-seccomp",
			"slirp4netns runs without --enable-sandbox (--security-opt slirp4netns-sandbox=false): slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-sandbox (install slirp4netns >= 0.4.0 to have it)", ""},
		{"lacks both, both let go", Config{NoSlirpSandbox: true, NoSlirpSeccomp: true}, beta1, "--disable-host-loopback",
			"slirp4netns runs without --enable-sandbox and --enable-seccomp (--security-opt slirp4netns-sandbox=false, slirp4netns-seccomp=false): slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --enable-sandbox and --enable-seccomp (install slirp4netns >= 0.4.0 to have them)", ""},
		{"has both, both turned off", Config{NoSlirpSandbox: true, NoSlirpSeccomp: true}, &all, "--disable-host-loopback",
			"slirp4netns runs without --enable-sandbox and --enable-seccomp (--security-opt slirp4netns-sandbox=false, slirp4netns-seccomp=false)", ""},

		{"lacks host loopback", Config{}, noLoopback, "", "",
			"slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --disable-host-loopback, so the container would reach every service on the host's 127.0.0.1 (install slirp4netns >= 0.4.0, or pass --allow-host-loopback to allow that)"},
		{"lacks host loopback, sandbox let go", Config{NoSlirpSandbox: true, NoSlirpSeccomp: true}, noLoopback, "", "",
			"slirp4netns 0.4.0-beta.1 (/usr/bin/slirp4netns) lacks --disable-host-loopback, so the container would reach every service on the host's 127.0.0.1 (install slirp4netns >= 0.4.0, or pass --allow-host-loopback to allow that)"},
		{"lacks host loopback, allowed", Config{AllowHostLoopback: true}, noLoopback, "--enable-sandbox --enable-seccomp", "", ""},

		{"kernel without seccomp filters", Config{}, noFilter, "", "",
			"slirp4netns --enable-seccomp needs seccomp filters, which this kernel lacks (build it with CONFIG_SECCOMP_FILTER, or pass --security-opt slirp4netns-seccomp=false to run without it)"},
		{"kernel without seccomp filters, let go", Config{NoSlirpSeccomp: true}, noFilter, "--disable-host-loopback --enable-sandbox",
			"slirp4netns runs without --enable-seccomp (--security-opt slirp4netns-seccomp=false)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, warn, err := confine(tc.cfg, tc.feat)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.err {
				t.Fatalf("error = %q\nwant    %q", gotErr, tc.err)
			}
			if want := strings.Fields(tc.args); strings.Join(args, " ") != strings.Join(want, " ") {
				t.Errorf("args = %q, want %q", args, want)
			}
			if warn != tc.warn {
				t.Errorf("warning = %q\nwant      %q", warn, tc.warn)
			}
		})
	}
}

// help120 is the start of slirp4netns 1.2.0's --help.
const help120 = `Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]
-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE 	 specify network namespace type ([path|pid], default=pid)
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)
--enable-seccomp         enable seccomp to limit syscalls (experimental)
`

func TestParseFeatures(t *testing.T) {
	for _, tc := range []struct {
		name, help string
		want       *Features
		err        string
	}{
		{"1.2.0", help120, &Features{EnableSandbox: true, EnableSeccomp: true, DisableHostLoopback: true}, ""},
		{"0.4 without sandbox", strings.ReplaceAll(strings.ReplaceAll(help120, "--enable-sandbox", ""), "--enable-seccomp", ""),
			&Features{DisableHostLoopback: true}, ""},
		{"0.3", strings.ReplaceAll(help120, "--netns-type", ""), nil, "is older than 0.4.0"},
		{"garbage", "Usage: something else\n", nil, "is older than 0.4.0"},
	} {
		got, err := parseFeatures(tc.help)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: error = %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: parseFeatures = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestLastMeaningfulLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"\n\n", ""},
		{"/proc/999/ns/net: No such file or directory\nchild failed(1)\n", "/proc/999/ns/net: No such file or directory"},
		{"sent tapfd=6 for tap0\nreceived tapfd=6\nslirp_add_hostfwd failed\n", "slirp_add_hostfwd failed"},
		{"sent tapfd=6 for tap0\nreceived tapfd=6\n", "received tapfd=6"},
		{"a\tb  c\r\n", "a b c"},
	} {
		if got := lastMeaningfulLine(tc.in); got != tc.want {
			t.Errorf("lastMeaningfulLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(8)
	for _, s := range []string{"abc", "defg", "hij", strings.Repeat("x", 20) + "12345678", "9"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "23456789" {
		t.Errorf("tail = %q, want %q", got, "23456789")
	}
	b = newTailBuffer(8)
	b.Write([]byte("abc"))
	b.Write([]byte("defgh"))
	b.Write([]byte("ij"))
	if got := b.String(); got != "cdefghij" {
		t.Errorf("tail = %q, want %q", got, "cdefghij")
	}
}

func TestCheckNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Check(Config{})
	want := "slirp4netns not found in $PATH (install slirp4netns >= 0.4, as root: apt-get install slirp4netns)"
	if err == nil || err.Error() != want {
		t.Fatalf("Check = %v, want %q", err, want)
	}
	// The other modes need no slirp4netns.
	for _, mode := range []string{ModeNone, ModeHost} {
		if _, err := Check(Config{Mode: mode}); err != nil {
			t.Errorf("Check(%s) = %v", mode, err)
		}
	}
}

func TestCheckTooOld(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "slirp4netns")
	script := "#!/bin/sh\n[ \"$1\" = --version ] && echo 'slirp4netns version 0.3.0' && exit 0\n" +
		"echo 'Usage: slirp4netns [OPTION]... PID [TAPNAME]'\necho '-r, --ready-fd=FD'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	_, err := Check(Config{})
	want := "slirp4netns 0.3.0 (" + fake + ") is older than 0.4.0 (install slirp4netns >= 0.4.0)"
	if err == nil || err.Error() != want {
		t.Fatalf("Check = %v, want %q", err, want)
	}
}

// TestCheckLacksOption: Check asks an installed slirp4netns that lacks an
// option for its version and refuses, naming both.
func TestCheckLacksOption(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "slirp4netns")
	help := strings.ReplaceAll(help120, "--enable-seccomp", "--enable-something-else")
	script := "#!/bin/sh\n[ \"$1\" = --version ] && printf 'slirp4netns version 0.4.0-rc.1\\ncommit: 0\\n' && exit 0\ncat <<'EOF'\n" + help + "EOF\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	_, err := Check(Config{})
	want := "slirp4netns 0.4.0-rc.1 (" + fake + ") lacks --enable-seccomp (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-seccomp=false to run without it)"
	if err == nil || err.Error() != want {
		t.Fatalf("Check = %v\nwant          %q", err, want)
	}
}

func TestCheckTun(t *testing.T) {
	defer func(old string) { tunPath = old }(tunPath)
	dir := t.TempDir()

	tunPath = filepath.Join(dir, "missing")
	err := checkTun()
	want := "open " + tunPath + ": no such file or directory (slirp4netns needs it; load the tun module, as root: modprobe tun)"
	if err == nil || err.Error() != want {
		t.Errorf("checkTun(missing) = %v, want %q", err, want)
	}

	if os.Geteuid() == 0 {
		t.Log("running as root: cannot test an unreadable /dev/net/tun")
		return
	}
	tunPath = filepath.Join(dir, "tun")
	if err := os.WriteFile(tunPath, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	err = checkTun()
	want = "open " + tunPath + ": permission denied (slirp4netns needs it; as root: chmod 0666 " + tunPath + ")"
	if err == nil || err.Error() != want {
		t.Errorf("checkTun(0400) = %v, want %q", err, want)
	}
}

// TestDetectFeaturesInBinary checks that reading the help text out of the
// installed binary finds what "slirp4netns --help" says.
func TestDetectFeaturesInBinary(t *testing.T) {
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		t.Fatal("slirp4netns not found in $PATH (install slirp4netns >= 0.4, as root: apt-get install slirp4netns)")
	}
	help, ok := helpInBinary(path)
	if !ok {
		t.Skipf("%s does not hold its help text; Check runs --help instead", path)
	}
	fromBinary, err := parseFeatures(help)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	fromHelp, err := parseFeatures(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if *fromBinary != *fromHelp {
		t.Errorf("features from the binary %+v, from --help %+v", fromBinary, fromHelp)
	}
}

func TestHelpInBinaryNotELF(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "slirp4netns")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n# --netns-type=TYPE\nexec /usr/bin/slirp4netns \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := helpInBinary(fake); ok {
		t.Error("helpInBinary accepted a script")
	}
}

func BenchmarkDetectFeatures(b *testing.B) {
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		b.Skip(err)
	}
	b.Run("binary", func(b *testing.B) {
		for b.Loop() {
			if _, err := detectFeatures(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("help", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command(path, "--help").Output()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := parseFeatures(string(out)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if _, err := Check(Config{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestWithFix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`open("/dev/net/tun"): Permission denied`, `open("/dev/net/tun"): Permission denied (as root: chmod 0666 /dev/net/tun)`},
		{`open("/dev/net/tun"): No such file or directory`, `open("/dev/net/tun"): No such file or directory (load the tun module, as root: modprobe tun)`},
		{"/proc/4242/ns/net: Permission denied", "/proc/4242/ns/net: Permission denied"},
	} {
		if got := withFix(tc.in); got != tc.want {
			t.Errorf("withFix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
