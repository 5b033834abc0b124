package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
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
		e.tenContainers(res, ref)
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
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.count(r)
		reg.ServeHTTP(w, r)
	})}
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

// requestCounts counts what clients asked the bench registry for, so that
// a re-pull's requests can be told: manifests (GET or HEAD) and blob
// downloads (GET).
type requestCounts struct {
	manifests, blobs atomic.Int64
}

func (c *requestCounts) count(r *http.Request) {
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		c.manifests.Add(1)
	case strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet:
		c.blobs.Add(1)
	}
}

func (c *requestCounts) reset() { c.manifests.Store(0); c.blobs.Store(0) }

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
		// GNU time, a small C program, runs the pull and writes its peak
		// resident set (wait4's: the larger of the process's and its
		// descendants'). wait4 in this process would report this process's
		// own size, which a fork (or vfork) child inherits as its peak.
		rss := filepath.Join(e.work, "maxrss")
		cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rss}, argv...)...)
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
		ms := []measure{{metric: "wall", unit: "ms", value: ms(d)}, {metric: "CPU", unit: "ms", value: ms(cpu)}}
		if b, err := os.ReadFile(rss); err == nil {
			var kib float64
			if _, err := fmt.Sscanf(string(b), "%g", &kib); err == nil {
				ms = append(ms, measure{metric: "peak RSS", unit: "MiB", value: kib / 1024})
			}
		}
		// The same pull again, the tag present: what it asks the registry.
		e.requests.reset()
		again := exec.Command(argv[0], argv[1:]...)
		again.Env = cmd.Env
		if out, err := again.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("re-pull: %s: %w: %s", strings.Join(argv, " "), err, oneLine(string(out)))
		}
		return append(ms,
			measure{metric: "re-pull: manifest requests", unit: "requests", value: float64(e.requests.manifests.Load())},
			measure{metric: "re-pull: blob downloads", unit: "requests", value: float64(e.requests.blobs.Load())}), nil
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

const tenGroup = "images: ten containers of one image, each writing 1 MiB: disk of the store"

// tenContainers measures the disk ten detached containers of one image take
// beyond the image's own (the bar: their own writes and no copy of the
// image), for rabbitc and podman with each driver. Disk use is du's, of the
// store's whole tree (hardlinks once), read inside each tool's user
// namespace, where the files of subordinate ids are readable: rabbitc
// through a container with the store as a read-only volume, podman through
// podman unshare.
func (e *env) tenContainers(res *results, ref string) {
	const n = 10
	payload := []string{"sh", "-c", "head -c 1048576 /dev/urandom >/written && touch /done && exec sleep 600"}
	tool := func(name string, base func(store string) []string, storeEnv string, du func(store string) (float64, error)) *contender {
		c := &contender{name: name}
		c.run = func(round int) ([]measure, error) {
			store := filepath.Join(e.work, "stores", fmt.Sprintf("ten-%s-%d", strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name), round+1))
			os.MkdirAll(store, 0o700)
			var env []string
			if storeEnv != "" {
				env = []string{storeEnv + "=" + store}
			}
			argv := base(store)
			cmd := func(args ...string) ([]byte, error) {
				return outputOf(2*time.Minute, env, append(append([]string(nil), argv...), args...)...)
			}
			var ids []string
			defer func() {
				cmd(append([]string{"rm", "-f"}, ids...)...)
				if storeEnv != "" {
					cmd("system", "reset")
				} else {
					cmd("system", "reset", "-f")
				}
				os.RemoveAll(store)
				os.RemoveAll(shortRunroot(store))
			}()
			pullArgs := []string{"pull", "-q", ref}
			if storeEnv == "" {
				pullArgs = []string{"pull", "-q", "--tls-verify=false", ref}
			}
			if out, err := cmd(pullArgs...); err != nil {
				return nil, fmt.Errorf("pull: %w: %s", err, oneLine(string(out)))
			}
			before, err := du(store)
			if err != nil {
				return nil, err
			}
			for i := 0; i < n; i++ {
				out, err := cmd(append([]string{"run", "-d", "--net", "none", ref}, payload...)...)
				if err != nil {
					return nil, fmt.Errorf("run -d: %w: %s", err, oneLine(string(out)))
				}
				ids = append(ids, strings.TrimSpace(string(out)))
			}
			for _, id := range ids {
				deadline := time.Now().Add(30 * time.Second)
				for {
					if _, err := cmd("exec", id, "test", "-e", "/done"); err == nil {
						break
					}
					if time.Now().After(deadline) {
						return nil, fmt.Errorf("container %s did not write its file in 30 s", id)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			after, err := du(store)
			if err != nil {
				return nil, err
			}
			return []measure{
				{metric: "store with the image", unit: "MiB", value: before},
				{metric: "growth with ten containers", unit: "MiB", value: after - before},
				{metric: "growth beyond their writes", unit: "MiB", value: after - before - n},
			}, nil
		}
		return c
	}
	rabbitcDu := func(store string) (float64, error) {
		out, err := outputOf(time.Minute, nil, e.rabbitc, "run", "--rm", "--net", "none", "--rootfs", e.rootfs,
			"-v", store+":/store:ro", "--", "du", "-sk", "/store")
		return parseDu(out, err)
	}
	podmanBase := func(driver string) func(string) []string {
		return func(store string) []string {
			return []string{"podman", "--root", store + "/root", "--runroot", shortRunroot(store), "--storage-driver", driver,
				"--cgroup-manager=cgroupfs", "--events-backend=file"}
		}
	}
	podmanDu := func(store string) (float64, error) {
		out, err := outputOf(time.Minute, nil, "podman", "unshare", "du", "-sk", store+"/root")
		return parseDu(out, err)
	}
	cs := []*contender{
		tool(rabbitcName, func(string) []string { return []string{e.rabbitc} }, "XDG_DATA_HOME", rabbitcDu),
		tool("podman (overlay)", podmanBase("overlay"), "", podmanDu),
		tool("podman (vfs)", podmanBase("vfs"), "", podmanDu),
	}
	e.requireTool(cs[1])
	e.requireTool(cs[2])
	alternate(res, tenGroup, min(e.rounds, 3), cs, e.logf)
}

// outputOf runs argv to exit and returns its standard output, or an error
// with its standard error's gist.
func outputOf(timeout time.Duration, extraEnv []string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(stderr.String()))
	}
	return out, nil
}

// parseDu reads du -sk's total, in MiB.
func parseDu(out []byte, err error) (float64, error) {
	if err != nil {
		return 0, fmt.Errorf("du: %w: %s", err, oneLine(string(out)))
	}
	var kib float64
	if _, err := fmt.Sscanf(string(out), "%g", &kib); err != nil {
		return 0, fmt.Errorf("du printed %q", oneLine(string(out)))
	}
	return kib / 1024, nil
}
