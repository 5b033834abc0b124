package image

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestMain(m *testing.M) {
	// The retry waits are for real registries; tests need not sit through them.
	blobRetryDelay = func(int) time.Duration { return 10 * time.Millisecond }
	retryBackoff.Duration = 10 * time.Millisecond
	if helper := os.Getenv("_RABBITC_IMAGE_TEST_HELPER"); helper != "" {
		os.Exit(runHelper(helper))
	}
	os.Exit(m.Run())
}

// request is one request the test registry saw.
type request struct {
	Method, Path, Range string
}

// testRegistry is ggcr's in-memory registry on 127.0.0.1 behind a
// recording handler; fault, when set, may answer a request itself.
type testRegistry struct {
	t     *testing.T
	host  string
	inner http.Handler

	mu    sync.Mutex
	log   []request
	fault func(w http.ResponseWriter, r *http.Request) bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{t: t, inner: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewUnstartedServer(tr)
	// ggcr tries https first; the plain server's complaint is noise.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (tr *testRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	tr.log = append(tr.log, request{r.Method, r.URL.Path, r.Header.Get("Range")})
	fault := tr.fault
	tr.mu.Unlock()
	if fault != nil && fault(w, r) {
		return
	}
	tr.inner.ServeHTTP(w, r)
}

func (tr *testRegistry) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	tr.fault = f
	tr.mu.Unlock()
}

// requests returns and forgets the requests seen so far.
func (tr *testRegistry) requests() []request {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	l := tr.log
	tr.log = nil
	return l
}

func count(reqs []request, kind, method string) int {
	n := 0
	for _, r := range reqs {
		if strings.Contains(r.Path, "/"+kind+"/") && (method == "" || r.Method == method) {
			n++
		}
	}
	return n
}

func (tr *testRegistry) push(repoTag string, img v1.Image) string {
	tr.t.Helper()
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		tr.t.Fatal(err)
	}
	tr.requests()
	return ref.String()
}

func (tr *testRegistry) pushIndex(repoTag string, idx v1.ImageIndex) string {
	tr.t.Helper()
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		tr.t.Fatal(err)
	}
	tr.requests()
	return ref.String()
}

func randomImage(t *testing.T, layerSize, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(layerSize, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testOpts never reads the invoking user's credential files.
func testOpts() PullOptions { return PullOptions{Keychain: FileKeychain{}} }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkPulled compares the stored image with img, blob by blob.
func checkPulled(t *testing.T, s *Store, got *Image, img v1.Image) {
	t.Helper()
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want {
		t.Fatalf("digest %s, want %s", got.Digest, want)
	}
	layers, _ := img.Layers()
	if len(got.Layers) != len(layers) {
		t.Fatalf("%d layers, want %d", len(got.Layers), len(layers))
	}
	for i, l := range layers {
		d, _ := l.Digest()
		diffID, _ := l.DiffID()
		if got.Layers[i].Digest != d || got.Layers[i].DiffID != diffID {
			t.Fatalf("layer %d: %+v, want %s / %s", i, got.Layers[i], d, diffID)
		}
		rc, err := got.Open(got.Layers[i])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if sha256Of(b) != d {
			t.Fatalf("layer %d: stored blob has digest %s", i, sha256Of(b))
		}
	}
	assertNoTemps(t, s)
}

// assertNoTemps: nothing but finished files in the store.
func assertNoTemps(t *testing.T, s *Store) {
	t.Helper()
	for _, dir := range []string{"tmp", "layers/sha256"} {
		ents, _ := os.ReadDir(s.path(dir))
		for _, e := range ents {
			if dir == "tmp" || strings.HasPrefix(e.Name(), layerTempPrefix) {
				t.Errorf("temporary file left: %s/%s", dir, e.Name())
			}
		}
	}
}
