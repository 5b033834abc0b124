package hostcheck

import (
	"errors"
	"testing"
)

func TestSplitFix(t *testing.T) {
	for _, tc := range []struct{ msg, detail, fix string }{
		{"slirp4netns 0.3.0 (/usr/bin/slirp4netns) lacks --enable-sandbox (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false to run without it)",
			"slirp4netns 0.3.0 (/usr/bin/slirp4netns) lacks --enable-sandbox",
			"install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false to run without it"},
		{"x lacks y (see (nested) parts)", "x lacks y", "see (nested) parts"},
		{"no fix here", "no fix here", ""},
		{"ends in f(x)", "ends in f(x)", ""},
		{"unbalanced)", "unbalanced)", ""},
	} {
		d, f := splitFix(tc.msg)
		if d != tc.detail || f != tc.fix {
			t.Errorf("splitFix(%q) = %q, %q; want %q, %q", tc.msg, d, f, tc.detail, tc.fix)
		}
	}
}

func TestSlirpCheck(t *testing.T) {
	for _, tc := range []struct {
		s    Slirp
		want string
	}{
		{Slirp{}, "error    slirp4netns: not found in $PATH — fix (as root): apt-get install slirp4netns"},
		{Slirp{Path: "/usr/bin/slirp4netns", Version: "1.2.0", Options: []string{"--disable-host-loopback", "--enable-sandbox"}},
			"ok       slirp4netns: /usr/bin/slirp4netns 1.2.0, runs with --disable-host-loopback --enable-sandbox"},
		{Slirp{Path: "/x/slirp4netns", Err: errors.New("slirp4netns 0.4.0-beta.1 (/x/slirp4netns) lacks --enable-seccomp (install slirp4netns >= 0.4.0)")},
			"error    slirp4netns: slirp4netns 0.4.0-beta.1 (/x/slirp4netns) lacks --enable-seccomp — fix: install slirp4netns >= 0.4.0"},
	} {
		if got := tc.s.check().String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestPortStart(t *testing.T) {
	for _, tc := range []struct {
		v       string
		present bool
		want    string
	}{
		{"0", true, "ok       net.ipv4.ip_unprivileged_port_start: 0: any host port can be published"},
		{"1024", true, "warning  net.ipv4.ip_unprivileged_port_start: 1024: host ports below 1024 cannot be published — fix (as root): " +
			"sysctl -w net.ipv4.ip_unprivileged_port_start=80 && echo net.ipv4.ip_unprivileged_port_start=80 >> /etc/sysctl.d/50-rabbitc.conf"},
		{"53", true, "warning  net.ipv4.ip_unprivileged_port_start: 53: host ports below 53 cannot be published — fix (as root): " +
			"sysctl -w net.ipv4.ip_unprivileged_port_start=0 && echo net.ipv4.ip_unprivileged_port_start=0 >> /etc/sysctl.d/50-rabbitc.conf"},
		{"", false, "ok       net.ipv4.ip_unprivileged_port_start: not in this kernel"},
	} {
		if got := portStart(tc.v, tc.present).String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
