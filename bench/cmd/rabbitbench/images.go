package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/rabbitc/rabbitc/image/imagetest"
)

const (
	pullGroup     = "images: pull and unpack of a 4-layer image (~20 MB compressed) into an empty store, from a registry on 127.0.0.1"
	firstRunGroup = "images: run --rm IMAGE /bin/true from the cache, against a --rootfs run"
)

// images measures issue 15's bars: a pull into an empty store (rabbitc
// against podman with its overlay driver and with vfs, Debian's default),
// wall and CPU (the pulling process and what it waited for), and the
// first run of a cached image against rabbitc's own --rootfs start and
// podman's run of the same image. The registry is go-containerregistry's,
// in this process, on 127.0.0.1; the image is the bench rootfs and three
// layers of random bytes (incompressible: what is measured is the
// transfer, the checks and the unpacking, not the compression ratio).
func images(e *env, res *results) {
	ref, stop, err := e.benchRegistry()
	rc := e.pullContender(rabbitcName, err, func(store string) []string {
		return []string{e.rabbitc, "pull", "-q", ref}
	}, func(store string) []string { return []string{e.rabbitc, "system", "reset"} }, "XDG_DATA_HOME")
	podman := func(driver string) *contender {
		c := e.pullContender("podman ("+driver+")", err, func(store string) []string {
			return []string{"podman", "--root", store + "/root", "--runroot", shortRunroot(store), "--storage-driver", driver,
				"pull", "-q", "--tls-verify=false", ref}
		}, func(store string) []string {
			return []string{"podman", "--root", store + "/root", "--runroot", shortRunroot(store), "--storage-driver", driver, "system", "reset", "-f"}
		}, "")
		e.requireTool(c)
		return c
	}
	alternate(res, pullGroup, e.rounds, []*contender{rc, podman("overlay"), podman("vfs")}, e.logf)
	if err == nil {
		e.firstRun(res, ref)
	}
	stop()
}

// benchRegistry serves the bench image on 127.0.0.1 and returns its
// reference.
func (e *env) benchRegistry() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", func() {}, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	stop := func() { srv.Close() }
	base, err := imagetest.DirLayer(e.rootfs, nil)
	if err != nil {
		return "", stop, err
	}
	layers := []v1.Layer{base}
	for i := 0; i < 3; i++ {
		l, err := random.Layer(6<<20, types.DockerLayer)
		if err != nil {
			return "", stop, err
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return "", stop, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", stop, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goArch()
	cf.Config = v1.Config{Env: []string{"PATH=/bin:/usr/bin"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", stop, err
	}
	ref := ln.Addr().String() + "/bench/image:1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err == nil {
		err = remote.Write(r, img)
	}
	return ref, stop, err
}

func goArch() string {
	b, _ := os.ReadFile("/proc/sys/kernel/arch")
	if strings.TrimSpace(string(b)) == "aarch64" {
		return "arm64"
	}
	return "amd64"
}

// pullContender times pull(store) into a fresh store each round, with its
// CPU (user+system of the process and of what it waited for); reset
// empties the store after the round (its files belong to subordinate ids:
// the runtime's own reset removes them). storeEnv, when set, names the
// variable that points the runtime at store.
func (e *env) pullContender(name string, setupErr error, pull, reset func(store string) []string, storeEnv string) *contender {
	c := &contender{name: name}
	if setupErr != nil {
		c.skipped = setupErr.Error()
		return c
	}
	store := ""
	c.run = func(round int) ([]measure, error) {
		store = filepath.Join(e.work, "stores", fmt.Sprintf("%s-%d", strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name), round+1))
		if err := os.MkdirAll(store, 0o700); err != nil {
			return nil, err
		}
		argv := pull(store)
		cmd := exec.Command(argv[0], argv[1:]...)
		if storeEnv != "" {
			cmd.Env = append(os.Environ(), storeEnv+"="+store)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(stderr.String()))
		}
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return []measure{{metric: "wall", unit: "ms", value: ms(d)}, {metric: "CPU", unit: "ms", value: ms(cpu)}}, nil
	}
	c.after = func(int) {
		argv := reset(store)
		cmd := exec.Command(argv[0], argv[1:]...)
		if storeEnv != "" {
			cmd.Env = append(os.Environ(), storeEnv+"="+store)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			e.logf("%s: %s: reset: %v: %s", pullGroup, name, err, oneLine(string(out)))
		}
		os.RemoveAll(store)
		os.RemoveAll(shortRunroot(store))
	}
	return c
}

// shortRunroot is podman's --runroot for a store: podman 4.3 refuses one
// of 50 characters or more.
func shortRunroot(store string) string {
	return fmt.Sprintf("/tmp/rbp-%d-%s", os.Getpid(), filepath.Base(store))
}

// firstRun times run --rm of the cached image against a --rootfs run of
// the same tree, and podman's run of the image (overlay).
func (e *env) firstRun(res *results, ref string) {
	store := filepath.Join(e.work, "stores", "first-run")
	pstore := filepath.Join(e.work, "stores", "first-run-podman")
	os.MkdirAll(store, 0o700)
	os.MkdirAll(pstore, 0o700)
	dataEnv := []string{"XDG_DATA_HOME=" + store}
	podman := []string{"podman", "--root", pstore + "/root", "--runroot", shortRunroot(pstore), "--storage-driver", "overlay", "--cgroup-manager=cgroupfs", "--events-backend=file"}
	prep := func() error {
		if _, out, err := timedRun(5*time.Minute, dataEnv, e.rabbitc, "pull", "-q", ref); err != nil {
			return fmt.Errorf("rabbitc pull: %w: %s", err, oneLine(string(out)))
		}
		if _, out, err := timedRun(5*time.Minute, nil, append(podman, "pull", "-q", "--tls-verify=false", ref)...); err != nil {
			return fmt.Errorf("podman pull: %w: %s", err, oneLine(string(out)))
		}
		return nil
	}
	timed := func(name string, env []string, argv ...string) *contender {
		return &contender{name: name, run: func(int) ([]measure, error) {
			d, out, err := timedRun(30*time.Second, env, argv...)
			if err != nil {
				return nil, fmt.Errorf("%w: %s", err, oneLine(string(out)))
			}
			return []measure{{metric: "start to exit", unit: "ms", value: ms(d)}}, nil
		}}
	}
	cs := []*contender{
		timed(rabbitcName, dataEnv, e.rabbitc, "run", "--rm", "--net", "none", ref, "/bin/true"),
		timed("rabbitc --rootfs", nil, e.rabbitc, "run", "--rootfs", e.rootfs, "--net", "none", "--", "/bin/true"),
		timed("podman", nil, append(podman, "run", "--rm", "--net", "none", ref, "/bin/true")...),
	}
	if err := prep(); err != nil {
		for _, c := range cs {
			c.skipped = err.Error()
		}
	}
	e.requireTool(cs[2])
	alternate(res, firstRunGroup, e.rounds, cs, e.logf)
	timedRun(time.Minute, dataEnv, e.rabbitc, "system", "reset")
	timedRun(time.Minute, nil, append(podman, "system", "reset", "-f")...)
	os.RemoveAll(shortRunroot(pstore))
}
