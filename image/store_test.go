package image

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestParseReference(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nginx", "docker.io/library/nginx:latest"},
		{"nginx:1.25", "docker.io/library/nginx:1.25"},
		{"docker.io/library/nginx", "docker.io/library/nginx:latest"},
		{"docker://alpine:3", "docker.io/library/alpine:3"},
		{"quay.io/team/app", "quay.io/team/app:latest"},
		{"registry.example:5000/team/app@sha256:" + strings.Repeat("ab", 32), "registry.example:5000/team/app@sha256:" + strings.Repeat("ab", 32)},
		{"oci:/var/img", "oci:/var/img"},
		{"oci:/var/img:v1", "oci:/var/img:v1"},
		{"oci-archive:/x/y.tar", "oci-archive:/x/y.tar"},
		{"docker-archive:/x/y.tar:nginx:1.25", "docker-archive:/x/y.tar:nginx:1.25"},
	} {
		r, err := ParseReference(tc.in)
		if err != nil || r.String() != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.in, r.String(), err, tc.want)
		}
	}
	for _, bad := range []string{"Nginx", "oci:", "nginx@sha256:12", ""} {
		if _, err := ParseReference(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestImportOCILayoutAndArchive(t *testing.T) {
	img1, img2 := randomImage(t, 2048, 2), randomImage(t, 2048, 1)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for tag, img := range map[string]v1.Image{"v1": img1, "v2": img2} {
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t)
	got, err := s.Pull(ctxT(t), "oci:"+dir+":v2", testOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img2)
	if _, err := s.Pull(ctxT(t), "oci:"+dir, testOpts()); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("untagged pull from a layout of two: %v", err)
	}

	archive := filepath.Join(t.TempDir(), "img.tar")
	tarDir(t, dir, archive)
	got, err = s.Pull(ctxT(t), "oci-archive:"+archive+":v1", testOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img1)
	if im, err := s.Inspect("oci-archive:" + archive + ":v1"); err != nil || im.Digest != got.Digest {
		t.Errorf("inspect: %v", err)
	}
}

func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	defer tw.Close()
	// One hostile name, which must be ignored.
	tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
}

func TestImportDockerArchive(t *testing.T) {
	img := randomImage(t, 4096, 3)
	archive := filepath.Join(t.TempDir(), "saved.tar")
	tag, _ := name.NewTag("example.com/app:2")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	var events int
	opts := testOpts()
	opts.Progress = func(Progress) { events++ }
	got, err := s.Pull(ctxT(t), "docker-archive:"+archive, opts)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for i, l := range layers {
		diffID, _ := l.DiffID()
		if got.Layers[i].DiffID != diffID || got.Layers[i].Digest != diffID || got.Layers[i].MediaType != ociLayerTar {
			t.Fatalf("layer %d: %+v, want an uncompressed blob of %s", i, got.Layers[i], diffID)
		}
		rc, _ := got.Open(got.Layers[i])
		b, _ := io.ReadAll(rc)
		rc.Close()
		if sha256Of(b) != diffID {
			t.Fatalf("layer %d blob is not the layer's tar", i)
		}
	}
	if events == 0 {
		t.Error("no progress events")
	}
	again, err := s.Pull(ctxT(t), "docker-archive:"+archive+":example.com/app:2", testOpts())
	if err != nil || again.Digest != got.Digest {
		t.Errorf("import by tag: %v (digest %s, first %s)", err, again.Digest, got.Digest)
	}
	assertNoTemps(t, s)
}

func TestRemoveReturnsUnusedLayersAndPruneCleansUp(t *testing.T) {
	reg := newTestRegistry(t)
	base := randomImage(t, 1024, 2)
	extra := randomImage(t, 1024, 1)
	xl, _ := extra.Layers()
	derived, err := mutate.AppendLayers(base, xl...)
	if err != nil {
		t.Fatal(err)
	}
	baseRef, derivedRef := reg.push("base:1", base), reg.push("derived:1", derived)
	s := newStore(t)
	for _, ref := range []string{baseRef, derivedRef} {
		im, err := s.Pull(ctxT(t), ref, testOpts())
		if err != nil {
			t.Fatal(err)
		}
		unpackFake(t, s, im)
	}
	if list, err := s.List(); err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}

	res, err := s.Remove(ctxT(t), derivedRef)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, _ := xl[0].DiffID()
	if len(res.Layers) != 1 || res.Layers[0] != onlyNew || len(res.Trash) != 1 {
		t.Fatalf("removed %+v, want only the layer %s", res, onlyNew)
	}
	if s.HasLayer(onlyNew) || !fileExists(res.Trash[0]) {
		t.Error("the unused layer is still visible, or its trash is gone")
	}
	d, _ := xl[0].Digest()
	if fileExists(s.blobPath(d)) {
		t.Error("the unused blob is still there")
	}
	os.RemoveAll(res.Trash[0]) // what cmd does inside the user namespace

	// By digest prefix: every tag goes.
	bim, _ := s.Inspect(baseRef)
	res, err = s.Remove(ctxT(t), bim.Digest.Hex[:12])
	if err != nil || len(res.Layers) != 2 || len(res.Untagged) != 1 {
		t.Fatalf("remove by id: %+v %v", res, err)
	}
	for _, p := range res.Trash {
		os.RemoveAll(p)
	}
	if _, err := s.Inspect(baseRef); !errors.Is(err, errNotFound) {
		t.Errorf("inspect after rmi: %v", err)
	}
	pr, err := s.Prune(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if pr.Blobs != 0 || len(pr.Layers) != 0 || len(pr.Trash) != 0 {
		t.Errorf("prune found %+v after rmi cleaned up", pr)
	}
	for _, dir := range []string{"blobs/sha256", "layers/sha256", "images/sha256", "tmp"} {
		if ents, _ := os.ReadDir(s.path(dir)); len(ents) != 0 {
			t.Errorf("%s not empty after removing everything: %d entries", dir, len(ents))
		}
	}
}

// unpackFake commits an empty directory for each layer, as cmd would.
func unpackFake(t *testing.T, s *Store, im *Image) {
	t.Helper()
	for _, l := range im.Layers {
		unlock, err := s.LockLayer(ctxT(t), l.DiffID)
		if err != nil {
			t.Fatal(err)
		}
		if !s.HasLayer(l.DiffID) {
			dir, err := s.TempDir()
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "file"), []byte(l.DiffID.Hex), 0o644)
			if err := s.CommitLayer(dir, l.DiffID); err != nil {
				t.Fatal(err)
			}
		}
		unlock()
	}
}

func TestCommitLayerNeverReplaces(t *testing.T) {
	s := newStore(t)
	h := sha256Of([]byte("layer"))
	for i := 0; i < 2; i++ {
		dir, err := s.TempDir()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "n"), []byte{byte(i)}, 0o644)
		err = s.CommitLayer(dir, h)
		if i == 1 && !errors.Is(err, fs.ErrExist) {
			t.Errorf("second commit: %v, want ErrExist", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(s.LayerDir(h), "n")); len(b) != 1 || b[0] != 0 {
		t.Error("the committed layer was replaced")
	}
	if err := s.CommitLayer(t.TempDir(), h); err == nil {
		t.Error("committed a directory from outside the store")
	}
}

func TestOpenRemovesTempsOfDeadProcesses(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	dead := "999999999-1-deadbeef"
	os.MkdirAll(s.path("tmp", dead, "sub"), 0o700)
	os.Mkdir(s.path("layers", "sha256", layerTempPrefix+dead), 0o700)
	mine, err := s.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if fileExists(s.path("tmp", dead)) || fileExists(s.path("layers", "sha256", layerTempPrefix+dead)) {
		t.Error("a dead process's temporary files survived Open")
	}
	if !fileExists(mine) {
		t.Error("Open removed a live process's temp dir")
	}
}
