package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestIsOCICommandLine: the rule of oci.go, both ways.
func TestIsOCICommandLine(t *testing.T) {
	for _, tc := range []struct {
		args string
		oci  bool
	}{
		{"--root /run/x create --bundle b id", true},
		{"--root=/run/x state id", true},
		{"--log-format json kill id KILL", true},
		{"--systemd-cgroup start id", true},
		{"create id", true},
		{"start id", true},
		{"state id", true},
		{"delete --force id", true},
		{"list", true},
		{"features", true},
		{"spec --rootless", true},
		{"run --bundle b id", true},
		{"run -b b -d id", true},
		{"exec --process p.json id", true},
		{"exec -p p.json id", true},
		{"exec --detach --pid-file f id sh", true},
		{"kill id KILL", true},
		{"kill --all id", true},
		{"kill -a id 9", true},
		{"ps id", true},
		{"ps --format json id", true},
		// docker-like
		{"", false},
		{"--rootfs ./rootfs", false},
		{"--rootfs=./rootfs --cmd /bin/sh", false},
		{"run --rootfs r -- sh -c exit", false},
		{"run --rootfs r -- sh -b x", false},
		{"exec -it web sh", false},
		{"exec web -- ps --process x", false},
		{"kill web", false},
		{"kill -s TERM web", false},
		{"kill --signal TERM web", false},
		{"ps", false},
		{"ps -a", false},
		{"ps --format json", false},
		{"logs -f web", false},
		{"rm -f web", false},
		{"version", false},
	} {
		var args []string
		if tc.args != "" {
			args = strings.Fields(tc.args)
		}
		if got := isOCICommandLine(args); got != tc.oci {
			t.Errorf("isOCICommandLine(%q) = %v, want %v", tc.args, got, tc.oci)
		}
	}
}

// TestOCILogJSON: with --log-format json an error is one JSON line with
// level, msg and time, which engines parse.
func TestOCILogJSON(t *testing.T) {
	var b bytes.Buffer
	writeLogLine(&b, "json", `container "x" does not exist`)
	var line struct{ Level, Msg, Time string }
	if err := json.Unmarshal(b.Bytes(), &line); err != nil || strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("log line %q: %v", b.String(), err)
	}
	if line.Level != "error" || line.Msg != `container "x" does not exist` || line.Time == "" {
		t.Errorf("log line %+v", line)
	}
}

func TestCheckOCIID(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "../x"} {
		if checkOCIID(bad) == nil {
			t.Errorf("checkOCIID(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"abc", "my-ctr_1.2", strings.Repeat("f", 64)} {
		if err := checkOCIID(ok); err != nil {
			t.Errorf("checkOCIID(%q) = %v", ok, err)
		}
	}
}
