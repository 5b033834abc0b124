package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rabbitc/rabbitc/netns"
)

func TestPayloadArgs(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
		want []string
	}{
		{"", nil, []string{"/bin/sh"}},
		{"/bin/server", nil, []string{"/bin/server"}},
		{"/bin/sh", []string{"-c", "echo $$"}, []string{"/bin/sh", "-c", "echo $$"}},
		{"", []string{"sh", "-c", "exit 7"}, []string{"sh", "-c", "exit 7"}},
	} {
		if got := payloadArgs(tc.cmd, tc.args); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("payloadArgs(%q, %q) = %q, want %q", tc.cmd, tc.args, got, tc.want)
		}
	}
}

func TestBuildEnv(t *testing.T) {
	t.Setenv("RABBITC_TEST_HOSTVAR", "from-host")
	t.Setenv("TERM", "screen")
	got, err := buildEnv(nil, []string{"A=1", "PATH=/x", "RABBITC_TEST_HOSTVAR", "UNSET_ON_HOST_Q", "A=2", "EMPTY="}, "h1", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/x", "HOSTNAME=h1", "TERM=screen", "A=2", "RABBITC_TEST_HOSTVAR=from-host", "EMPTY="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("buildEnv = %q, want %q", got, want)
	}
	for _, bad := range []string{"=x", "", "A\x00=1"} {
		if _, err := buildEnv(nil, []string{bad}, "h", false); err == nil {
			t.Errorf("buildEnv accepted %q", bad)
		}
	}
}

func TestCheckUser(t *testing.T) {
	for _, ok := range []string{"0", "1000", "1000:1000", "nobody", "alice:staff", "1000:staff"} {
		if err := checkUser(ok); err != nil {
			t.Errorf("checkUser(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{":1000", "a b", "a/b", "-1", "99999999999", "1000:-5"} {
		if err := checkUser(bad); err == nil {
			t.Errorf("checkUser(%q) accepted", bad)
		}
	}
}

func TestCheckHostname(t *testing.T) {
	if err := checkHostname("web-1.local"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"a b", "a/b", strings.Repeat("x", 65), "é"} {
		if err := checkHostname(bad); err == nil {
			t.Errorf("checkHostname(%q) accepted", bad)
		}
	}
}

func TestFindProgram(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "run"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644)
	for _, tc := range []struct {
		name, path string
		want       string
		code       int
	}{
		{"run", bin, filepath.Join(bin, "run"), 0},
		{filepath.Join(bin, "run"), "", filepath.Join(bin, "run"), 0},
		{"nosuch", bin, "", 127},
		{filepath.Join(bin, "nosuch"), bin, "", 127},
		{"data", bin, "", 126},
		{filepath.Join(bin, "data"), bin, "", 126},
		{bin, bin, "", 126},
		{"", bin, "", 127},
	} {
		got, code, err := findProgram(tc.name, tc.path)
		if got != tc.want || code != tc.code || (code != 0) != (err != nil) {
			t.Errorf("findProgram(%q) = %q, %d, %v; want %q, %d", tc.name, got, code, err, tc.want, tc.code)
		}
	}
}

func TestNewSpecErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		name string
		o    runOptions
		want string
	}{
		{"no rootfs", runOptions{}, "--rootfs is required"},
		{"missing rootfs", runOptions{rootfs: filepath.Join(dir, "nope")}, "no such directory"},
		{"file rootfs", runOptions{rootfs: file}, "not a directory"},
		{"bad net", runOptions{rootfs: dir, net: "bridge"}, "--net"},
		{"publish with none", runOptions{rootfs: dir, net: "none", publish: []string{"8080:80"}}, "--publish needs --net slirp4netns"},
		{"bad publish", runOptions{rootfs: dir, net: "slirp4netns", publish: []string{"abc"}}, "abc"},
		{"relative workdir", runOptions{rootfs: dir, net: "none", workdir: "tmp"}, "not an absolute path"},
		{"bad user", runOptions{rootfs: dir, net: "none", user: ":1"}, "--user"},
		{"missing volume source", runOptions{rootfs: dir, net: "none", volumes: []string{filepath.Join(dir, "nope") + ":/x"}}, "create it first"},
		{"bad mtu", runOptions{rootfs: dir, net: "slirp4netns", mtu: 10}, "--mtu"},
		{"rm=false", runOptions{rootfs: dir, net: "none", rm: -1}, "--rm=false"},
		{"bad tmpfs", runOptions{rootfs: dir, net: "none", tmpfs: []string{"/run:bogus"}}, "tmpfs"},
		{"bad ulimit", runOptions{rootfs: dir, net: "none", ulimits: []string{"nofile=2:1"}}, "--ulimit nofile=2:1: soft limit 2"},
		{"slirp option with none", runOptions{rootfs: dir, net: "none", securityOpt: []string{"slirp4netns-seccomp=false"}},
			"--security-opt slirp4netns-seccomp=false needs --net slirp4netns (got --net none)"},
		{"host loopback with host", runOptions{rootfs: dir, net: "host", hostLoop: true}, "--allow-host-loopback needs --net slirp4netns"},
		{"bad slirp option", runOptions{rootfs: dir, net: "slirp4netns", securityOpt: []string{"slirp4netns-sandbox=maybe"}}, "invalid boolean"},
		{"bad net-accel", runOptions{rootfs: dir, net: "slirp4netns", netAccel: "auto"}, `invalid --net-accel "auto" (use on or off)`},
	} {
		_, err := newSpec(&tc.o, nil, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: newSpec error = %v, want it to mention %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", tc.name, err)
		}
	}
}

// TestSlirpSecurityOpts: the slirp4netns values of --security-opt go to
// the network's Config, the others on to security.ParseConfig in order.
func TestSlirpSecurityOpts(t *testing.T) {
	for _, tc := range []struct {
		opts              []string
		rest              []string
		noSandbox, noSecc bool
		err               string
	}{
		{opts: nil},
		{opts: []string{"seccomp=unconfined", "no-new-privileges=false"}, rest: []string{"seccomp=unconfined", "no-new-privileges=false"}},
		{opts: []string{"slirp4netns-sandbox=false"}, noSandbox: true},
		{opts: []string{"no-new-privileges", "slirp4netns-seccomp=false", "seccomp=x.json"}, rest: []string{"no-new-privileges", "seccomp=x.json"}, noSecc: true},
		{opts: []string{"slirp4netns-seccomp=false", "slirp4netns-seccomp=true"}},
		{opts: []string{"slirp4netns-sandbox=0", "slirp4netns-seccomp=FALSE"}, noSandbox: true, noSecc: true},
		{opts: []string{"slirp4netns-sandbox"}, err: `security-opt "slirp4netns-sandbox": invalid boolean "" (use slirp4netns-sandbox=true|false)`},
		{opts: []string{"slirp4netns-seccomp=off"}, err: `security-opt "slirp4netns-seccomp=off": invalid boolean "off" (use slirp4netns-seccomp=true|false)`},
		{opts: []string{"slirp4netns:enable_sandbox=false"}, err: `security-opt "slirp4netns:enable_sandbox=false": unknown option (use slirp4netns-sandbox=false or slirp4netns-seccomp=false)`},
		{opts: []string{"slirp4netns-sandbox:false"}, err: `security-opt "slirp4netns-sandbox:false": unknown option (use slirp4netns-sandbox=false or slirp4netns-seccomp=false)`},
	} {
		var cfg netns.Config
		rest, err := slirpSecurityOpts(tc.opts, &cfg)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("slirpSecurityOpts(%q) error = %v, want %q", tc.opts, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(rest, tc.rest) || cfg.NoSlirpSandbox != tc.noSandbox || cfg.NoSlirpSeccomp != tc.noSecc {
			t.Errorf("slirpSecurityOpts(%q) = %q, %+v, %v; want %q, sandbox off %v, seccomp off %v",
				tc.opts, rest, cfg, err, tc.rest, tc.noSandbox, tc.noSecc)
		}
	}
}

func TestProcStartTime(t *testing.T) {
	if procStartTime(os.Getpid()) == 0 {
		t.Error("no start time for this process")
	}
	if procStartTime(1<<30) != 0 {
		t.Error("start time for a pid that cannot exist")
	}
}

func TestReadEnvFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.env")
	os.WriteFile(a, []byte("# comment\nA=1\n\n  # indented comment\nB=two words\r\nC=\"quoted\"\nD\nE=x=y\n"), 0o644)
	got, err := readEnvFiles([]string{a})
	want := []string{"A=1", "B=two words", `C="quoted"`, "D", "E=x=y"}
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("readEnvFiles = %q, %v; want %q", got, err, want)
	}
	bad := filepath.Join(dir, "bad.env")
	os.WriteFile(bad, []byte("OK=1\n=novar\n"), 0o644)
	for _, p := range []string{bad, filepath.Join(dir, "missing.env")} {
		if _, err := readEnvFiles([]string{p}); err == nil || !strings.HasPrefix(err.Error(), "--env-file "+p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line about --env-file", p, err)
		}
	}
	// -e overrides the file, as in docker.
	env, err := buildEnv(nil, append(got, "A=override"), "h", false)
	if err != nil || !hasEnv(env, "A") || envValue(env, "A") != "override" || envValue(env, "B") != "two words" {
		t.Errorf("buildEnv = %q, %v", env, err)
	}
}
