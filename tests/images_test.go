package tests

// Issue 15 (first part): pull, images, rmi, run IMAGE from a registry on
// 127.0.0.1 that the test serves itself (go-containerregistry's registry).

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/rabbitc/rabbitc/image/imagetest"
)

// testImage pushes to a registry on 127.0.0.1 an image of two layers: the
// test rootfs, and a layer that adds /etc/layer2 and removes /bin/true's
// neighbour /etc/removed (a whiteout); its config sets Cmd, Env and
// WorkingDir. It returns the reference.
func testImage(t *testing.T) string {
	t.Helper()
	base := layerFromDir(t, env.rootfs, map[string]string{"etc/removed": "x\n"})
	top := layerFromFiles(t, map[string]string{"etc/layer2": "second layer\n", "etc/.wh.removed": ""})
	img := imageOf(t, v1.Config{Cmd: []string{"sh", "-c", "echo from-the-image-cmd; pwd"}, Env: []string{"IMG_VAR=from-image", "PATH=/bin:/usr/bin"},
		WorkingDir: "/work/dir", StopSignal: "SIGUSR1", ExposedPorts: map[string]struct{}{"8080/tcp": {}}}, base, top)
	return serveImage(t, "test/busybox:1", img)
}

// imageOf is an image of layers, bottom first, for this machine's
// platform, with config cfg.
func imageOf(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if a := goarch(); a != "" {
		cf.Architecture = a
	}
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// serveImage pushes img as repoTag to a registry of its own on 127.0.0.1
// (go-containerregistry's, served by the test) and returns the reference.
func serveImage(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/" + repoTag
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

func goarch() string {
	b, _ := os.ReadFile("/proc/sys/kernel/arch")
	switch strings.TrimSpace(string(b)) {
	case "aarch64":
		return "arm64"
	case "x86_64":
		return "amd64"
	}
	return ""
}

// layerFromDir tars dir (and extra files) into a layer.
func layerFromDir(t *testing.T, dir string, extra map[string]string) v1.Layer {
	l, err := imagetest.DirLayer(dir, extra)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func layerFromFiles(t *testing.T, files map[string]string) v1.Layer {
	l, err := imagetest.FilesLayer(files)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func tarLayer(t *testing.T, b []byte) v1.Layer {
	l, err := imagetest.TarLayer(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRunImage: pull, images, run (the image's Cmd, Env and WorkingDir, the
// arguments replacing Cmd, a whiteout hiding a lower file, writes kept out
// of the image and gone with the container), rmi.
func TestRunImage(t *testing.T) {
	requireSetup(t)
	ref := testImage(t)
	data := userDir(t, "xdg-data", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + data}}

	r := runOpt(t, o, "pull", "-q", ref)
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.out(), "sha256:") {
		t.Errorf("pull printed %q, want the image's digest", r.out())
	}
	r = runOpt(t, o, "images")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "/test/busybox") || !strings.Contains(r.stdout, " 1 ") {
		t.Errorf("images:\n%s", r.stdout)
	}

	r = runOpt(t, o, "run", "--rm", "--net", "none", ref)
	wantCode(t, r, 0)
	if r.out() != "from-the-image-cmd\n/work/dir" {
		t.Errorf("the image's Cmd and WorkingDir: %q", r.out())
	}
	// A cached image runs from the store alone: with no rabbitc-image
	// beside rabbitc, run works; --pull always needs it.
	alone := userDir(t, "rabbitc-alone", 0o755)
	if err := copyFile(env.bin, filepath.Join(alone, "rabbitc"), 0o755); err != nil {
		t.Fatal(err)
	}
	oAlone := o
	oAlone.bin = filepath.Join(alone, "rabbitc")
	r = runOpt(t, oAlone, "run", "--rm", "--net", "none", ref)
	wantCode(t, r, 0)
	if r.out() != "from-the-image-cmd\n/work/dir" {
		t.Errorf("a cached image without rabbitc-image: %q", r.out())
	}
	wantOneErrorLine(t, runOpt(t, oAlone, "run", "--rm", "--pull", "always", "--net", "none", ref), 125, "rabbitc-image not found")
	r = runOpt(t, o, "run", "--net", "none", ref, "sh", "-c",
		"echo $IMG_VAR; cat /etc/layer2; test -e /etc/removed && echo removed-file-visible; echo mine > /etc/mine; exit 4")
	wantCode(t, r, 4)
	if r.out() != "from-image\nsecond layer" {
		t.Errorf("env, upper layer, whiteout: %q", r.out())
	}
	r = runOpt(t, o, "run", "--net", "none", "-e", "IMG_VAR=flag", ref, "sh", "-c", "echo $IMG_VAR; test -e /etc/mine && echo write-leaked; exit 0")
	wantCode(t, r, 0)
	if r.out() != "flag" {
		t.Errorf("-e over the image's Env, and a container's writes not in the next one: %q", r.out())
	}
	if left := listDir(filepath.Join(data, "rabbitc", "containers")); len(left) > 0 {
		t.Errorf("containers' directories left in the store: %v", left)
	}
	layers, _ := filepath.Glob(filepath.Join(data, "rabbitc", "layers", "sha256", "*", "etc", "mine"))
	if len(layers) > 0 {
		t.Errorf("a container wrote into a layer: %v", layers)
	}

	r = runOpt(t, o, "rmi", ref)
	wantCode(t, r, 0)
	r = runOpt(t, o, "images", "-q")
	wantCode(t, r, 0)
	if r.out() != "" {
		t.Errorf("images after rmi: %q", r.out())
	}
	wantOneErrorLine(t, runOpt(t, o, "run", "--rm", "--pull", "never", "--net", "none", ref), 125, "pull")

	// system reset removes the whole store, the unpacked layers (files of
	// the container's ids) included.
	wantCode(t, runOpt(t, o, "pull", "-q", ref), 0)
	wantCode(t, runOpt(t, o, "system", "reset"), 0)
	if left := listDir(data); len(left) > 0 {
		t.Errorf("system reset left %v", left)
	}
}

// A registry that is not there: one line, 125, nothing left in the store.
func TestPullRegistryDown(t *testing.T) {
	requireSetup(t)
	data := userDir(t, "xdg-data", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + data}}
	wantOneErrorLine(t, runOpt(t, o, "pull", "127.0.0.1:9/none/such:1"), 125, "connection refused")
	wantOneErrorLine(t, runOpt(t, o, "run", "--rm", "127.0.0.1:9/none/such:1"), 125, "connection refused")
	if left, _ := filepath.Glob(filepath.Join(data, "rabbitc", "blobs", "sha256", "*")); len(left) > 0 {
		t.Errorf("blobs left: %v", left)
	}
}

// A detached container of an image, read-only: its writable directory in
// the store goes with rm -f; rmi refuses an image a container uses.
func TestRunImageDetached(t *testing.T) {
	ref := testImage(t)
	d := newDetachedEnv(t)
	data := userDir(t, "xdg-data", 0o700)
	d.env = []string{"XDG_DATA_HOME=" + data}
	id, r := d.runD("--name", "img", "--read-only", "--net", "none", ref, "sh", "-c", "touch /x 2>/dev/null || echo read-only; exec sleep 60")
	wantCode(t, r, 0)
	if n := len(listDir(filepath.Join(data, "rabbitc", "containers"))); n != 1 {
		t.Errorf("%d container directories in the store, want 1", n)
	}
	wantOneErrorLine(t, d.run("rmi", ref), 125, "used by container")
	wantCode(t, d.run("rm", "-f", "img"), 0)
	_ = id
	if left := listDir(filepath.Join(data, "rabbitc", "containers")); len(left) > 0 {
		t.Errorf("the container's directory is left after rm -f: %v", left)
	}
	// stop sends the image's StopSignal: a payload that exits on USR1
	// only ends with 0, not killed after the timeout.
	_, r = d.runD("--name", "sig", "--net", "none", ref, "sh", "-c", "trap 'exit 0' USR1; echo trapped; while :; do sleep 0.1; done")
	wantCode(t, r, 0)
	// Not before the trap is set: a shell that is PID 1 ignores USR1
	// until then, and stop would end it by SIGKILL after its timeout.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.run("logs", "sig").stdout, "trapped"); {
		if time.Now().After(deadline) {
			t.Fatal("the container did not set its trap in 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantCode(t, d.run("stop", "-t", "5", "sig"), 0)
	if st := d.run("ps", "-a", "--format", "json"); !strings.Contains(st.stdout, `"ExitCode": 0`) {
		t.Errorf("stop with the image's StopSignal (USR1): %s", st.stdout)
	}
	wantCode(t, d.run("rm", "sig"), 0)
	wantCode(t, d.run("rmi", ref), 0)
}

// An image of 70 layers (more than one mount option holds) whose files
// belong to several ids, with a hardlink, a symlink, a setuid bit and an
// opaque directory: as the image says, inside the container.
func TestRunImageManyLayersAndIDs(t *testing.T) {
	requireSetup(t)
	layers := []v1.Layer{layerFromDir(t, env.rootfs, map[string]string{"data/old/gone": "x\n"})}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "owned/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 101, Gid: 102},
		{Name: "owned/file", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 1001, Size: 3},
		{Name: "owned/hard", Typeflag: tar.TypeLink, Linkname: "owned/file"},
		{Name: "owned/sym", Typeflag: tar.TypeSymlink, Linkname: "file", Uid: 7, Gid: 7},
		{Name: "data/old/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "data/old/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "data/old/new", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("ab\n"))
		}
	}
	tw.Close()
	layers = append(layers, tarLayer(t, buf.Bytes()))
	for i := 0; len(layers) < 70; i++ {
		layers = append(layers, layerFromFiles(t, map[string]string{"layers/" + strings.Repeat("x", 10) + string(rune('a'+i%26)) + "-" + itoa(i): "x\n"}))
	}
	ref := serveImage(t, "test/many:1", imageOf(t, v1.Config{Env: []string{"PATH=/bin"}}, layers...))
	data := userDir(t, "xdg-data", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + data}}
	wantCode(t, runOpt(t, o, "pull", "-q", ref), 0)
	// By each storage driver: fuse-overlayfs takes the 70 layers in one
	// option too, the copy applies them one after the other.
	for _, driver := range []string{"overlay", "fuse-overlayfs", "vfs"} {
		if driver == "fuse-overlayfs" {
			requireFuse(t)
		}
		od := opts{env: append(o.env, "RABBITC_STORAGE_DRIVER="+driver)}
		res := runOpt(t, od, "run", "--rm", "-q", "--net", "none", ref, "sh", "-c",
			"stat -c '%u:%g %a' /owned /owned/file /owned/sym; stat -c %h /owned/file; readlink /owned/sym; ls /data/old; ls /layers | wc -l")
		wantCode(t, res, 0)
		want := "101:102 755\n1000:1001 4755\n7:7 777\n2\nfile\nnew\n68"
		if res.out() != want {
			t.Errorf("the image's files in the container (%s):\n%s\nwant\n%s", driver, res.out(), want)
		}
	}
	wantCode(t, runOpt(t, o, "system", "reset"), 0)
}

// -P publishes the image's exposed port on a port the kernel chose, which
// ps shows; the server answers there on 127.0.0.1.
func TestRunImagePublishAll(t *testing.T) {
	requireNet(t)
	ref := testImage(t)
	d := newDetachedEnv(t)
	data := userDir(t, "xdg-data", 0o700)
	d.env = []string{"XDG_DATA_HOME=" + data}
	_, r := d.runD("--name", "web", "-P", "-q", ref, "sh", "-c", "mkdir -p /tmp/www && echo hello-from-P > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www")
	wantCode(t, r, 0)
	ps := d.run("ps", "--format", "json")
	m := regexp.MustCompile(`0\.0\.0\.0:(\d+):8080/tcp`).FindStringSubmatch(ps.stdout)
	if m == nil {
		t.Fatalf("ps shows no port for 8080/tcp:\n%s", ps.stdout)
	}
	body, err := httpGetRetry("http://127.0.0.1:"+m[1]+"/index.html", 10*time.Second)
	if err != nil || strings.TrimSpace(body) != "hello-from-P" {
		t.Errorf("GET 127.0.0.1:%s: %q, %v", m[1], body, err)
	}
	wantCode(t, d.run("rm", "-f", "web"), 0)
	wantCode(t, d.run("system", "reset"), 0)
}

// What a killed unpack leaves (a layer under its temporary name, with a
// file of another of the container's ids, which the user cannot remove from
// outside) goes at the next image command.
func TestKilledUnpackCollected(t *testing.T) {
	requireSetup(t)
	if os.Geteuid() != 0 || len(env.user.subuid) == 0 {
		t.Skip("makes a file of a subordinate id: needs root and the test user's /etc/subuid range")
	}
	data := userDir(t, "xdg-data", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + data}}
	wantCode(t, runOpt(t, o, "images", "-q"), 0) // makes the store
	stale := filepath.Join(data, "rabbitc", "layers", "sha256", ".tmp-999999-1-abc")
	sub := filepath.Join(stale, "dir")
	for _, d := range []string{stale, sub} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o644)
	id := env.user.subuid[0].start + 100 // the container's uid 101
	os.Chown(filepath.Join(sub, "f"), id, id)
	os.Chown(sub, id, id)
	os.Chown(stale, env.user.uid, env.user.gid)
	wantCode(t, runOpt(t, o, "images", "-q"), 0)
	if fileExists(stale) {
		t.Errorf("the killed unpack's layer %s is still there", stale)
	}
}

// kill -9 of a foreground rabbitc running an image: its container ends
// (the watchdog), and its writable directory in the store goes at the next
// run of an image.
func TestKillRabbitcImageCollected(t *testing.T) {
	requireSetup(t)
	ref := testImage(t)
	data := userDir(t, "xdg-data", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + data}}
	wantCode(t, runOpt(t, o, "pull", "-q", ref), 0)
	p := start(t, o, "run", "--net", "none", ref, "sh", "-c", "echo up; exec sleep 30")
	p.waitOutput(t, o, "up", 10*time.Second)
	p.signal(t, syscall.SIGKILL)
	p.wait(t) // nothing of the container left running
	if n := len(listDir(filepath.Join(data, "rabbitc", "containers"))); n != 1 {
		t.Fatalf("%d container directories after the kill, want the killed one's", n)
	}
	wantCode(t, runOpt(t, o, "run", "--rm", "--net", "none", ref, "true"), 0)
	if left := listDir(filepath.Join(data, "rabbitc", "containers")); len(left) > 0 {
		t.Errorf("the killed container's directory is still there: %v", left)
	}
}
