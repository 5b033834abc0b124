package main

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const inf = unix.RLIM_INFINITY

func TestParseUlimit(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want specs.POSIXRlimit
		err  string // a part of the error; "" for none
	}{
		{"nofile=100:200", specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200}, ""},
		{"nofile=1024", specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}, ""},
		{"core=0", specs.POSIXRlimit{Type: "RLIMIT_CORE", Soft: 0, Hard: 0}, ""},
		{"core=0:-1", specs.POSIXRlimit{Type: "RLIMIT_CORE", Soft: 0, Hard: inf}, ""},
		{"memlock=-1", specs.POSIXRlimit{Type: "RLIMIT_MEMLOCK", Soft: inf, Hard: inf}, ""},
		{"stack=unlimited", specs.POSIXRlimit{Type: "RLIMIT_STACK", Soft: inf, Hard: inf}, ""},
		{"rttime=5:infinity", specs.POSIXRlimit{Type: "RLIMIT_RTTIME", Soft: 5, Hard: inf}, ""},
		{"as=1000000000", specs.POSIXRlimit{Type: "RLIMIT_AS", Soft: 1e9, Hard: 1e9}, ""},
		{"sigpending=7:7", specs.POSIXRlimit{Type: "RLIMIT_SIGPENDING", Soft: 7, Hard: 7}, ""},
		{"nproc=10:10", specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: 10, Hard: 10}, ""},

		{"nofiles=10", specs.POSIXRlimit{}, `unknown limit "nofiles" (valid: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)`},
		{"NOFILE=10", specs.POSIXRlimit{}, "unknown limit"},
		{"=10", specs.POSIXRlimit{}, "unknown limit"},
		{"nofile", specs.POSIXRlimit{}, "expected NAME=SOFT[:HARD]"},
		{"", specs.POSIXRlimit{}, `--ulimit "": expected NAME=SOFT[:HARD]`},
		{"nofile=", specs.POSIXRlimit{}, "expected NAME=SOFT[:HARD], each a number, -1 or unlimited"},
		{"nofile=abc", specs.POSIXRlimit{}, "each a number"},
		{"nofile=1:2:3", specs.POSIXRlimit{}, "each a number"},
		{"nofile=1:", specs.POSIXRlimit{}, "each a number"},
		{"nofile=:1", specs.POSIXRlimit{}, "each a number"},
		{"nofile=-2", specs.POSIXRlimit{}, "each a number"},
		{"nofile=+5", specs.POSIXRlimit{}, "each a number"},
		{"nofile= 5", specs.POSIXRlimit{}, `--ulimit "nofile= 5": expected`},
		{"nofile=1\n2", specs.POSIXRlimit{}, `--ulimit "nofile=1\n2": expected`},
		{"nofile=18446744073709551616", specs.POSIXRlimit{}, "each a number"},
		{"nofile=200:100", specs.POSIXRlimit{}, "--ulimit nofile=200:100: soft limit 200 above the hard limit 100"},
		{"core=-1:0", specs.POSIXRlimit{}, "soft limit unlimited above the hard limit 0"},
	} {
		_, got, err := parseUlimit(tc.arg)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseUlimit(%q): %v", tc.arg, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("parseUlimit(%q) = %+v, want %+v", tc.arg, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseUlimit(%q) = %+v, %v; want an error with %q", tc.arg, got, err, tc.err)
		case err != nil && !strings.HasPrefix(err.Error(), "--ulimit "+shownArg(tc.arg)+": "):
			t.Errorf("parseUlimit(%q): error %q does not start with the flag", tc.arg, err)
		}
	}
}

func TestCheckUlimit(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		max  uint64
		want string // "" for no error
	}{
		{"nofile=100:200", 1048576, ""},
		{"nofile=1048576", 1048576, ""},
		{"nofile=2000000", 1048576, "--ulimit nofile=2000000: above the hard limit 1048576 rabbitc has (raise it in /etc/security/limits.conf, or with ulimit -Hn as root, before starting rabbitc)"},
		{"nofile=10:unlimited", 1048576, "above the hard limit 1048576"},
		{"core=unlimited", inf, ""},
		{"core=1", 0, "above the hard limit 0 rabbitc has (raise it in /etc/security/limits.conf, or with ulimit -Hc as root"},
		{"nproc=5:6", 5, "above the hard limit 5"},
		{"rttime=1", 0, "ulimit -HR"},
	} {
		name, l, err := parseUlimit(tc.arg)
		if err != nil {
			t.Fatalf("parseUlimit(%q): %v", tc.arg, err)
		}
		err = checkUlimit(tc.arg, name, l, tc.max)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkUlimit(%q, max %d) = %v, want %q", tc.arg, tc.max, err, tc.want)
		}
	}
}

// parseUlimits reads rabbitc's own limits: lowering is always allowed, a
// hard limit above rabbitc's is refused, and the last value of a name wins.
func TestParseUlimits(t *testing.T) {
	var have unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &have); err != nil {
		t.Fatal(err)
	}
	got, err := parseUlimits([]string{"nofile=10:20", "core=0", "nofile=5:6"})
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 5, Hard: 6}, {Type: "RLIMIT_CORE"}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("parseUlimits = %+v, %v; want %+v", got, err, want)
	}
	// RLIMIT_NOFILE is never unlimited (fs.nr_open bounds it).
	if _, err := parseUlimits([]string{"nofile=1:unlimited"}); err == nil || !strings.Contains(err.Error(), "above the hard limit "+rlimitString(have.Max)) {
		t.Errorf("nofile=1:unlimited: %v, want it refused above %d", err, have.Max)
	}
	if got, err := parseUlimits(nil); got != nil || err != nil {
		t.Errorf("parseUlimits(nil) = %v, %v", got, err)
	}
}

// Every name maps to its own resource and to the runtime-spec's type name.
func TestRlimitNames(t *testing.T) {
	seen := map[int]string{}
	for i, r := range rlimitNames {
		if other, ok := seen[r.resource]; ok {
			t.Errorf("%s and %s share resource %d", r.name, other, r.resource)
		}
		seen[r.resource] = r.name
		if i > 0 && rlimitNames[i-1].name >= r.name {
			t.Errorf("rlimitNames not sorted at %s", r.name)
		}
	}
	if len(seen) != 16 || rlimitType("nofile") != "RLIMIT_NOFILE" || rlimitType("as") != "RLIMIT_AS" {
		t.Errorf("%d names, rlimitType(nofile) = %s", len(seen), rlimitType("nofile"))
	}
}

func FuzzParseUlimit(f *testing.F) {
	for _, s := range []string{"nofile=100:200", "core=0", "memlock=-1", "stack=unlimited:unlimited", "nproc=1:2:3", "x=1", "nofile=2:1", "="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		name, l, err := parseUlimit(arg)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("parseUlimit(%q): error of more than one line: %q", arg, err)
			}
			return
		}
		if _, ok := rlimitByName(name); !ok || l.Type != rlimitType(name) || l.Soft > l.Hard {
			t.Errorf("parseUlimit(%q) = %q, %+v", arg, name, l)
		}
		// What it accepts prints back to itself.
		_, again, err := parseUlimit(name + "=" + rlimitString(l.Soft) + ":" + rlimitString(l.Hard))
		if err != nil || again != l {
			t.Errorf("parseUlimit(%q) = %+v does not round-trip: %+v, %v", arg, l, again, err)
		}
	})
}
