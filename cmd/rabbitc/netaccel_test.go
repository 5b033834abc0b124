package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/rabbitc/rabbitc/netaccel"
)

// TestNetAccelOffReason: acceleration is on only for rabbitc run's
// slirp4netns network, under a seccomp profile with no_new_privs, unless
// --net-accel=off; each other case has its reason for --debug.
func TestNetAccelOffReason(t *testing.T) {
	dir := t.TempDir()
	profile := dir + "/profile.json"
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/x", nil, 0o755); err != nil { // the payload
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    runOptions
		oci  bool
		want string // "" on, else a part of the reason
	}{
		{"default", runOptions{}, false, ""},
		{"flag on", runOptions{netAccel: "on"}, false, ""},
		{"a profile file", runOptions{securityOpt: []string{"seccomp=" + profile}}, false, ""},
		{"host loopback", runOptions{hostLoop: true}, false, ""},
		{"published", runOptions{publish: []string{"8080:80"}}, false, ""},
		{"flag off", runOptions{netAccel: "off"}, false, "--net-accel=off"},
		{"net none", runOptions{net: "none"}, false, "--net none"},
		{"net host", runOptions{net: "host"}, false, "--net host"},
		{"unconfined", runOptions{securityOpt: []string{"seccomp=unconfined"}}, false, "seccomp=unconfined"},
		{"no no_new_privs", runOptions{securityOpt: []string{"no-new-privileges=false"}}, false, "no-new-privileges=false"},
		{"oci", runOptions{}, true, "OCI"},
	} {
		o := tc.o
		o.rootfs, o.cmd = dir, "/x"
		if o.net == "" {
			o.net = "slirp4netns"
		}
		s, err := newSpec(&o, nil, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s.OCIMode = tc.oci
		got := netAccelOffReason(s, o.netAccel)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: reason %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestNetFilterBytes: the filter travels to init as bytes, unchanged.
func TestNetFilterBytes(t *testing.T) {
	prog := netaccel.Filter()
	got, err := progOf(progBytes(prog))
	if err != nil || !reflect.DeepEqual(got, prog) {
		t.Fatalf("progOf(progBytes(Filter())) = %d instructions, %v; want the %d of Filter", len(got), err, len(prog))
	}
	for _, b := range [][]byte{nil, make([]byte, 7), make([]byte, 17)} {
		if _, err := progOf(b); err == nil {
			t.Errorf("progOf accepted %d bytes", len(b))
		}
	}
}
