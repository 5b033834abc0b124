package netns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "slirp4netns", want: ModeSlirp},
		{in: "none", want: ModeNone},
		{in: "host", want: ModeHost},
		{in: "slirp", err: `invalid --net "slirp" (use slirp4netns, none or host)`},
		{in: "", err: `invalid --net "" (use slirp4netns, none or host)`},
		{in: "Host", err: `invalid --net "Host" (use slirp4netns, none or host)`},
		{in: "bridge", err: `invalid --net "bridge" (use slirp4netns, none or host)`},
	} {
		got, err := ParseMode(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseMode(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		err string
	}{
		{cfg: Config{}},
		{cfg: Config{Mode: ModeSlirp, MTU: 1500, AllowHostLoopback: true}},
		{cfg: Config{Mode: ModeSlirp, MTU: MinMTU}},
		{cfg: Config{Mode: ModeSlirp, MTU: MaxMTU}},
		{cfg: Config{Mode: ModeNone}},
		{cfg: Config{Mode: ModeHost}},
		{cfg: Config{Mode: ModeSlirp, MTU: 67}, err: "invalid --mtu 67 (use 68 to 65521)"},
		{cfg: Config{Mode: ModeSlirp, MTU: 65522}, err: "invalid --mtu 65522 (use 68 to 65521)"},
		{cfg: Config{Mode: ModeSlirp, MTU: -1}, err: "invalid --mtu -1 (use 68 to 65521)"},
		{cfg: Config{Mode: "pasta"}, err: `invalid --net "pasta" (use slirp4netns, none or host)`},
		{cfg: Config{Mode: ModeNone, MTU: 1500}, err: "--mtu needs --net slirp4netns (got --net none)"},
		{cfg: Config{Mode: ModeHost, AllowHostLoopback: true}, err: "--allow-host-loopback needs --net slirp4netns (got --net host)"},
	} {
		err := tc.cfg.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%+v.Validate() = %v, want %q", tc.cfg, err, tc.err)
		}
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "resolv.conf")
	hostText := "# from the host\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.internal\n"
	if err := os.WriteFile(hostFile, []byte(hostText), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old string) { hostResolvConf = old }(hostResolvConf)
	hostResolvConf = hostFile

	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "nameserver 10.0.2.3\n"},
		{Config{Mode: ModeSlirp, AllowHostLoopback: true}, "nameserver 10.0.2.3\n"},
		{Config{Mode: ModeNone}, "# rabbitc: --net none, no name servers\n"},
		{Config{Mode: ModeHost}, hostText},
	} {
		if got := string(ResolvConf(tc.cfg)); got != tc.want {
			t.Errorf("ResolvConf(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}

	hostResolvConf = filepath.Join(dir, "missing")
	got := string(ResolvConf(Config{Mode: ModeHost}))
	if !strings.HasPrefix(got, "# rabbitc: --net host, but open ") || strings.Count(got, "\n") != 1 {
		t.Errorf("ResolvConf(host) with no host file = %q, want one comment line", got)
	}
}

func TestHosts(t *testing.T) {
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "hosts")
	hostText := "127.0.0.1\tlocalhost\n127.0.1.1\tbuildbox # the host\n::1 localhost ip6-localhost ip6-loopback"
	if err := os.WriteFile(hostFile, []byte(hostText), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old string) { hostHosts = old }(hostHosts)
	hostHosts = hostFile

	const base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	for _, tc := range []struct {
		cfg      Config
		hostname string
		want     string
	}{
		{Config{}, "web", base + "10.0.2.100\tweb\n"},
		{Config{Mode: ModeSlirp, AllowHostLoopback: true}, "web", base + "10.0.2.100\tweb\n10.0.2.2\thost.containers.internal\n"},
		{Config{Mode: ModeSlirp}, "", base},
		{Config{Mode: ModeNone}, "web", base + "127.0.1.1\tweb\n"},
		{Config{Mode: ModeHost}, "web", hostText + "\n127.0.1.1\tweb\n"},
		{Config{Mode: ModeHost}, "buildbox", hostText + "\n"},
		{Config{Mode: ModeHost}, "the", hostText + "\n127.0.1.1\tthe\n"}, // a comment names nothing
		{Config{Mode: ModeHost}, "", hostText + "\n"},
	} {
		if got := string(Hosts(tc.cfg, tc.hostname)); got != tc.want {
			t.Errorf("Hosts(%+v, %q) = %q, want %q", tc.cfg, tc.hostname, got, tc.want)
		}
	}

	hostHosts = filepath.Join(dir, "missing")
	if got, want := string(Hosts(Config{Mode: ModeHost}, "web")), base+"127.0.1.1\tweb\n"; got != want {
		t.Errorf("Hosts(host) with no host file = %q, want %q", got, want)
	}
}

func TestParseHostEntry(t *testing.T) {
	slirp, host, none := Config{Mode: ModeSlirp}, Config{Mode: ModeHost}, Config{Mode: ModeNone}
	for _, tc := range []struct {
		in   string
		cfg  Config
		want HostEntry
	}{
		{"db:10.0.2.50", slirp, HostEntry{"db", "10.0.2.50"}},
		{"db=192.0.2.1", none, HostEntry{"db", "192.0.2.1"}},
		{"v6:::1", none, HostEntry{"v6", "::1"}},
		{"v6:[2001:db8::1]", none, HostEntry{"v6", "2001:db8::1"}},
		{"host.docker.internal:host-gateway", slirp, HostEntry{"host.docker.internal", GatewayIP}},
		{"gw:host-gateway", host, HostEntry{"gw", "127.0.0.1"}},
	} {
		got, err := ParseHostEntry(tc.in, tc.cfg)
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "db", "db:", ":1.2.3.4", "db:notanip", "d b:1.2.3.4", "gw:host-gateway"} {
		if _, err := ParseHostEntry(in, none); err == nil || !strings.HasPrefix(err.Error(), "--add-host ") {
			t.Errorf("%q: error %v, want one about --add-host", in, err)
		}
	}
	extra := []HostEntry{{"db", "10.0.2.50"}, {"v6", "::1"}}
	for _, mode := range []string{ModeSlirp, ModeNone, ModeHost} {
		h := string(Hosts(Config{Mode: mode, ExtraHosts: extra}, "web"))
		if !strings.HasSuffix(h, "10.0.2.50\tdb\n::1\tv6\n") {
			t.Errorf("--net %s: /etc/hosts does not end with the extra entries:\n%s", mode, h)
		}
	}
}
