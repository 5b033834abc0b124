package tests

// Issue 15, item 8: a real distribution's image. tests/setup.sh builds,
// once, Debian bookworm by debootstrap (minbase) as one layer and
// mini-httpd installed by dpkg over it as a second; the test makes an image
// of them, serves it from a registry on 127.0.0.1 and runs Debian's
// mini_httpd as the image's user behind -p.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// debianImageDir is where tests/setup.sh keeps the fixture (its
// $FIXTURES/$DEBIAN_IMAGE).
func debianImageDir() string {
	dir := os.Getenv("RABBITC_TEST_CACHE")
	if dir == "" {
		dir = "/var/cache/rabbitc-tests"
	}
	return filepath.Join(dir, "debian-bookworm-minbase-mini-httpd-1")
}

// debianFixture is the fixture's image.json: the config of the image, and
// the page its server serves.
type debianFixture struct {
	Cmd  []string `json:"cmd"`
	User string   `json:"user"`
	Port string   `json:"port"` // exposed, "8080/tcp"
	Path string   `json:"path"`
	Body string   `json:"body"`
}

// debianImage pushes the fixture's image to a registry on 127.0.0.1 and
// returns its reference; the test skips when setup.sh could not build it.
func debianImage(t *testing.T) (string, debianFixture) {
	t.Helper()
	dir := debianImageDir()
	var fx debianFixture
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if os.IsNotExist(err) {
		t.Skipf("no Debian image fixture at %s: run tests/setup.sh as root on a host whose apt sources reach a Debian bookworm mirror", dir)
	}
	if err == nil {
		err = json.Unmarshal(b, &fx)
	}
	if err != nil {
		t.Fatalf("fixture %s: %v (remove the directory and run tests/setup.sh again)", dir, err)
	}
	cfg := v1.Config{Cmd: fx.Cmd, User: fx.User, ExposedPorts: map[string]struct{}{fx.Port: {}}}
	ref := pushLayers(t, "debian/mini-httpd:bookworm", cfg,
		filepath.Join(dir, "layer1.tar.gz"), filepath.Join(dir, "layer2.tar.gz"))
	return ref, fx
}

// pushLayers pushes an image of the layer tarballs (gzip) with cfg (and
// Debian's PATH) to a registry of its own on 127.0.0.1 and returns its
// reference.
func pushLayers(t *testing.T, repoTag string, cfg v1.Config, files ...string) string {
	t.Helper()
	var layers []v1.Layer
	for _, f := range files {
		l, err := tarball.LayerFromFile(f)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	cfg.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return serveImage(t, repoTag, imageOf(t, cfg, layers...))
}

// TestDistroImageServes: Debian's mini_httpd, from an image of Debian's
// packages, answers on the published port as the image's user (www-data,
// a name of the image's /etc/passwd, which cannot bind port 80: the server
// listens on 8080); exec sees Debian 12; rm -f leaves nothing.
func TestDistroImageServes(t *testing.T) {
	requireNet(t)
	t0 := time.Now()
	ref, fx := debianImage(t)
	t.Logf("image pushed in %v", time.Since(t0).Round(time.Millisecond))
	d := newDetachedEnv(t)
	data := userDir(t, "xdg-data", 0o700)
	d.env = []string{"XDG_DATA_HOME=" + data}

	t1 := time.Now()
	wantCode(t, d.run("pull", "-q", ref), 0)
	t.Logf("pulled in %v", time.Since(t1).Round(time.Millisecond))
	port := freePort(t, 1)
	ctrPort, _, _ := strings.Cut(fx.Port, "/")
	t2 := time.Now()
	id, r := d.runD("-p", fmt.Sprintf("127.0.0.1:%d:%s", port, ctrPort), ref)
	wantCode(t, r, 0)
	if id == "" {
		t.FailNow()
	}
	st := d.state(id)

	// (Its log then holds "bind: Address already in use": mini_httpd binds
	// [::] first, which takes IPv4 too, then 0.0.0.0, and serves on the
	// first.)
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, fx.Path)
	body, err := getPage(url, 10*time.Second)
	if err != nil || strings.TrimSpace(body) != fx.Body {
		t.Errorf("GET %s: %q, %v; want %q\nlogs:\n%s", url, body, err, fx.Body, d.run("logs", id))
	} else {
		t.Logf("served %v after run -d began", time.Since(t2).Round(time.Millisecond))
	}

	// The server is the container's PID 1, mini_httpd, as www-data: uid
	// and gid 33 in the container, which its uid_map gives a subordinate
	// id on the host.
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.InitPid)); strings.TrimSpace(string(comm)) != "mini_httpd" {
		t.Errorf("the container's PID 1 is %q, want mini_httpd", strings.TrimSpace(string(comm)))
	}
	for _, m := range []struct{ field, mapFile string }{{"Uid:", "uid_map"}, {"Gid:", "gid_map"}} {
		want, err := mapID(st.InitPid, m.mapFile, 33)
		if err != nil {
			t.Fatal(err)
		}
		got := statusIDs(st.InitPid, m.field)
		if w := strings.Repeat(strconv.Itoa(want)+" ", 4); got+" " != w {
			t.Errorf("the server's %s %q on the host, want %d (www-data, 33, through %s) for all four", m.field, got, want, m.mapFile)
		}
	}
	if r := d.run("exec", id, "id", "-un"); r.code != 0 || r.out() != "www-data" {
		t.Errorf("exec id -un: want www-data (the image's user):\n%s", r)
	}
	if r := d.run("exec", id, "cat", "/etc/debian_version"); r.code != 0 || !regexp.MustCompile(`^12\.\d+$`).MatchString(r.out()) {
		t.Errorf("exec cat /etc/debian_version: want 12.x:\n%s", r)
	}

	wantCode(t, d.run("rm", "-f", id), 0)
	if !d.waitMonitorGone(st.ParentPid, 5*time.Second) {
		t.Errorf("the monitor %d still runs after rm -f", st.ParentPid)
	}
	if _, ok := readProcs()[st.InitPid]; ok {
		t.Errorf("the server %d still runs after rm -f", st.InitPid)
	}
	if err := (hostPort{ip: "127.0.0.1", port: port, proto: "tcp"}).bindable(); err != nil {
		t.Errorf("port %d still bound after rm -f: %v", port, err)
	}
	if left := d.containers(); len(left) > 0 {
		t.Errorf("state left after rm -f: %v", left)
	}
	if left := listDir(filepath.Join(data, "rabbitc", "containers")); len(left) > 0 {
		t.Errorf("the container's directory is left in the store after rm -f: %v", left)
	}
	// The layers hold files of the container's ids (_apt's 42, utmp's
	// 43, ...): system reset removes them all.
	wantCode(t, d.run("system", "reset"), 0)
	if left := listDir(data); len(left) > 0 {
		t.Errorf("system reset left %v", left)
	}
}

// getPage GETs url until it answers 200 or timeout passes.
func getPage(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get(url)
		if err != nil {
			last = err
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
		return string(b), err
	}
	return "", last
}

// mapID maps a container id to the host's through /proc/PID/{uid,gid}_map.
func mapID(pid int, mapFile string, id int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, mapFile))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var inside, outside, n int
		if _, err := fmt.Sscan(line, &inside, &outside, &n); err == nil && id >= inside && id < inside+n {
			return outside + id - inside, nil
		}
	}
	return 0, fmt.Errorf("%d is not in /proc/%d/%s:\n%s", id, pid, mapFile, b)
}

// statusIDs is the Uid: or Gid: line of /proc/PID/status, its four ids
// separated by single spaces.
func statusIDs(pid int, field string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[0] == field {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}
