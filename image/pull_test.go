package image

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func TestPullThenRepullMakesOneManifestRequest(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 4096, 3)
	ref := reg.push("team/app:1.0", img)
	s := newStore(t)

	var mu sync.Mutex
	finished := map[v1.Hash]ProgressState{}
	opts := testOpts()
	opts.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.State != LayerFetching {
			finished[p.Digest] = p.State
		}
	}
	got, err := s.Pull(ctxT(t), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img)
	if got.Ref != reg.host+"/team/app:1.0" {
		t.Errorf("Ref %q", got.Ref)
	}
	if len(finished) != 3 {
		t.Errorf("progress: %d layers finished, want 3", len(finished))
	}
	first := reg.requests()
	if n := count(first, "blobs", http.MethodGet); n != 4 { // config + 3 layers
		t.Errorf("first pull: %d blob GETs, want 4: %v", n, first)
	}

	again, err := s.Pull(ctxT(t), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	reqs := reg.requests()
	if m, b := count(reqs, "manifests", ""), count(reqs, "blobs", ""); m != 1 || b != 0 {
		t.Errorf("re-pull: %d manifest and %d blob requests, want 1 and 0: %v", m, b, reqs)
	}
	if again.Digest != got.Digest {
		t.Errorf("re-pull digest %s", again.Digest)
	}

	opts.Policy = PullMissing
	if _, err := s.Pull(ctxT(t), ref, opts); err != nil {
		t.Fatal(err)
	}
	if reqs := reg.requests(); len(reqs) != 0 {
		t.Errorf("pull missing of a present image: %v", reqs)
	}
	opts.Policy = PullNever
	if _, err := s.Pull(ctxT(t), reg.host+"/team/other:1", opts); err == nil || !strings.Contains(err.Error(), "not in the store") {
		t.Errorf("pull never of an absent image: %v", err)
	}
}

func TestPullNewTagContentFetchesOnlyNewLayers(t *testing.T) {
	reg := newTestRegistry(t)
	base := randomImage(t, 2048, 2)
	ref := reg.push("app:latest", base)
	s := newStore(t)
	if _, err := s.Pull(ctxT(t), ref, testOpts()); err != nil {
		t.Fatal(err)
	}
	extra := randomImage(t, 2048, 1)
	l, _ := extra.Layers()
	img, err := mutate.AppendLayers(base, l...)
	if err != nil {
		t.Fatal(err)
	}
	reg.push("app:latest", img)
	got, err := s.Pull(ctxT(t), ref, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img)
	if n := count(reg.requests(), "blobs", http.MethodGet); n != 2 { // config + the new layer
		t.Errorf("%d blob GETs, want 2", n)
	}
}

func TestPullIndexSelectsThisMachine(t *testing.T) {
	reg := newTestRegistry(t)
	mine, other := randomImage(t, 1024, 1), randomImage(t, 1024, 1)
	here := DefaultPlatform()
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "mips64le"}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &here}},
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
	ref := reg.pushIndex("multi:1", idx)
	s := newStore(t)
	got, err := s.Pull(ctxT(t), ref, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, mine)
	reg.requests()
	if runtime.GOARCH == "amd64" && DefaultPlatform().Architecture != "amd64" {
		t.Fatal("default platform is not this machine's")
	}

	// Re-pull: the HEAD gives the index digest, which the tag recorded.
	if _, err := s.Pull(ctxT(t), ref, testOpts()); err != nil {
		t.Fatal(err)
	}
	if reqs := reg.requests(); count(reqs, "manifests", "") != 1 || count(reqs, "blobs", "") != 0 {
		t.Errorf("re-pull of an index: %v", reqs)
	}

	opts := testOpts()
	opts.Platform = &v1.Platform{OS: "linux", Architecture: "riscv64"}
	_, err = s.Pull(ctxT(t), ref, opts)
	want := "no image for linux/riscv64 (available: linux/mips64le, " + platformString(here) + "; choose one with --platform)"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v, want ...%s", err, want)
	}
}

func TestSelectPlatformVariants(t *testing.T) {
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "aa"}, Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "bb"}, Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "cc"}, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}},
	}}
	for _, tc := range []struct {
		want v1.Platform
		hex  string
	}{
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "bb"},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "cc"},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, "cc"},
		{v1.Platform{OS: "linux", Architecture: "arm"}, "aa"},
	} {
		d, err := selectPlatform(idx, tc.want)
		if err != nil || d.Digest.Hex != tc.hex {
			t.Errorf("%s: got %s, %v; want %s", platformString(tc.want), d.Digest.Hex, err, tc.hex)
		}
	}
}

// tokenServer wraps a registry with docker's token protocol: /v2/ answers
// 401 with a Bearer challenge; /token hands out a token for user:secret.
func tokenServer(t *testing.T, reg *testRegistry) {
	var realm string
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" {
			user, pass, ok := r.BasicAuth()
			if !ok || user != "user" || pass != "secret" {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`)
				return true
			}
			fmt.Fprint(w, `{"token":"t0k3n"}`)
			return true
		}
		if r.Header.Get("Authorization") != "Bearer t0k3n" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="test"`, realm))
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return true
		}
		return false
	})
	realm = "http://" + reg.host + "/token"
}

func TestPullWithTokenAuthFromAuthJSON(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 1024, 2)
	ref := reg.push("private/app:1", img)
	tokenServer(t, reg)

	home, run := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("XDG_RUNTIME_DIR", run)
	s := newStore(t)

	_, err := s.Pull(ctxT(t), ref, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "denied") || !strings.Contains(err.Error(), "auth.json") {
		t.Fatalf("without credentials: %v", err)
	}

	// A wrong entry in docker's file is shadowed by the right one in the
	// runtime dir, which comes first.
	writeAuth(t, filepath.Join(home, ".docker", "config.json"), "https://"+reg.host+"/v1/", "user:wrong")
	writeAuth(t, filepath.Join(run, "containers", "auth.json"), reg.host, "user:secret")
	got, err := s.Pull(ctxT(t), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img)
}

func writeAuth(t *testing.T, file, key, userPass string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(file), 0o700)
	b := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, key, base64.StdEncoding.EncodeToString([]byte(userPass)))
	if err := os.WriteFile(file, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuthKeysMostSpecificFirst(t *testing.T) {
	r, _ := ParseReference("reg.example:5000/team/app:1")
	got := strings.Join(authKeys(r.Docker.Context()), " ")
	if want := "reg.example:5000/team/app reg.example:5000/team reg.example:5000"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// failOnce answers the first request matching match with status.
func failOnce(match func(*http.Request) bool, status int) func(http.ResponseWriter, *http.Request) bool {
	var mu sync.Mutex
	done := false
	return func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if done || !match(r) {
			return false
		}
		done = true
		w.WriteHeader(status)
		return true
	}
}

func isManifest(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }
func isBlob(r *http.Request) bool     { return strings.Contains(r.URL.Path, "/blobs/") }

func TestPullRetries429And5xx(t *testing.T) {
	for _, tc := range []struct {
		name   string
		match  func(*http.Request) bool
		status int
	}{
		{"429 on the manifest", isManifest, http.StatusTooManyRequests},
		{"503 on a blob", isBlob, http.StatusServiceUnavailable},
		{"500 on a blob", isBlob, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			img := randomImage(t, 2048, 2)
			ref := reg.push("app:1", img)
			reg.setFault(failOnce(tc.match, tc.status))
			s := newStore(t)
			got, err := s.Pull(ctxT(t), ref, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			checkPulled(t, s, got, img)
		})
	}
}

func TestPullResumesACutBlobWithRange(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 256<<10, 1)
	ref := reg.push("app:1", img)
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	size, _ := layers[0].Size()

	var mu sync.Mutex
	cut := false
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if cut || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, digest.String()) {
			return false
		}
		cut = true
		// Half the blob, then the connection drops.
		rec := httptest.NewRecorder()
		reg.inner.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusOK)
		w.Write(rec.Body.Bytes()[:size/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	s := newStore(t)
	got, err := s.Pull(ctxT(t), ref, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img)
	var ranges []string
	for _, r := range reg.requests() {
		if strings.HasSuffix(r.Path, digest.String()) {
			ranges = append(ranges, r.Range)
		}
	}
	want := fmt.Sprintf("bytes=%d-%d", size/2, size-1)
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != want {
		t.Errorf("requests for the blob had Range %q, want [\"\" %q]", ranges, want)
	}
}

func TestPullRejectsWrongBytes(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 4096, 2)
	ref := reg.push("app:1", img)
	layers, _ := img.Layers()
	bad, _ := layers[1].Digest()
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad.String()) {
			return false
		}
		rec := httptest.NewRecorder()
		reg.inner.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		b[len(b)/2] ^= 0xff
		w.Write(b)
		return true
	})
	s := newStore(t)
	_, err := s.Pull(ctxT(t), ref, testOpts())
	if err == nil || !strings.Contains(err.Error(), "wrong data") {
		t.Fatalf("got %v, want a digest error", err)
	}
	if fileExists(s.blobPath(bad)) || fileExists(s.partialPath(bad)) {
		t.Error("the bad blob is visible, or kept for a resume")
	}
	if tags, _ := s.readTags(); len(tags) != 0 {
		t.Errorf("tags after a failed pull: %v", tags)
	}
	// The other layer's transfer was cancelled: its partial file stays for
	// the next pull to resume. Nothing else may be left.
}

func TestPullFromADownRegistrySaysSo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := newStore(t)
	_, err = s.Pull(ctxT(t), addr+"/library/nginx", testOpts())
	want := "pull " + addr + "/library/nginx:latest: connect to " + addr + ": connection refused (is the registry running? check the name)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestPullManifestUnknown(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push("app:1", randomImage(t, 1024, 1))
	s := newStore(t)
	_, err := s.Pull(ctxT(t), reg.host+"/app:2", testOpts())
	if err == nil || !strings.Contains(err.Error(), "manifest unknown") || !strings.Contains(err.Error(), "check the tag") {
		t.Errorf("got %v", err)
	}
}

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	var reached []string
	inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		reached = append(reached, r.URL.Host)
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	g := &plainHTTPGuard{inner: inner}
	for _, u := range []string{"http://127.0.0.1:5000/v2/", "http://[::1]:5000/v2/", "http://localhost/v2/", "https://10.1.2.3/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := g.RoundTrip(req); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.1.2.3:5000/v2/", "http://registry.local/v2/", "http://192.168.1.1/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := g.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "--tls-verify=false") {
			t.Errorf("%s: got %v, want a refusal", u, err)
		}
	}
	if len(reached) != 4 {
		t.Errorf("requests that went through: %v", reached)
	}
	g.insecure = true
	req, _ := http.NewRequest(http.MethodGet, "http://10.1.2.3:5000/v2/", nil)
	if _, err := g.RoundTrip(req); err != nil {
		t.Errorf("insecure: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConcurrentPullsFetchEachBlobOnce(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 512<<10, 4)
	ref := reg.push("app:1", img)
	root := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two Store values: two sets of lock fds, as two processes have.
			s, err := Open(root)
			if err == nil {
				_, err = s.Pull(ctxT(t), ref, testOpts())
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	layers, _ := img.Layers()
	reqs := reg.requests()
	for _, l := range layers {
		d, _ := l.Digest()
		n := 0
		for _, r := range reqs {
			if r.Method == http.MethodGet && strings.HasSuffix(r.Path, d.String()) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("layer %s fetched %d times", d, n)
		}
	}
}
