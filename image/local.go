package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// importLayout copies the image r names from the OCI layout in dir.
func (s *Store) importLayout(ctx context.Context, r Reference, dir string, opts PullOptions) (*Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", dir, err)
	}
	desc, err := pickLayoutManifest(im, r.Tag)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	source := desc.Digest
	want := opts.platform()
	for depth := 0; desc.MediaType.IsIndex(); depth++ {
		if depth == 3 {
			return nil, errors.New("indexes nested too deep")
		}
		if idx, err = idx.ImageIndex(desc.Digest); err != nil {
			return nil, err
		}
		if im, err = idx.IndexManifest(); err != nil {
			return nil, err
		}
		if desc, err = selectPlatform(im, want); err != nil {
			return nil, err
		}
	}
	manifest, err := readVerifiedFile(p, desc)
	if err != nil {
		return nil, err
	}
	m, err := parseImageManifest(manifest)
	if err != nil {
		return nil, err
	}
	config, err := readVerifiedFile(p, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	source2 := func(d v1.Descriptor) blobSource {
		return fileBlob(filepath.Join(dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
	}
	if err := s.fetchLayers(ctx, m.Layers, source2, opts.Progress); err != nil {
		return nil, err
	}
	rec := tagRecord{Digest: desc.Digest, Source: source, Platform: platformString(want)}
	return s.finish(ctx, r, rec, manifest, config)
}

// pickLayoutManifest finds the image tagged tag, or the only image.
func pickLayoutManifest(im *v1.IndexManifest, tag string) (v1.Descriptor, error) {
	var names []string
	for _, d := range im.Manifests {
		n := d.Annotations[refNameAnnotation]
		if tag != "" && n == tag {
			return d, nil
		}
		if n != "" {
			names = append(names, n)
		}
	}
	if tag == "" && len(im.Manifests) == 1 {
		return im.Manifests[0], nil
	}
	if tag == "" {
		return v1.Descriptor{}, fmt.Errorf("it holds %d images: name one (tags: %s)", len(im.Manifests), strings.Join(names, ", "))
	}
	return v1.Descriptor{}, fmt.Errorf("no image tagged %q (tags: %s)", tag, strings.Join(names, ", "))
}

func readVerifiedFile(p layout.Path, d v1.Descriptor) ([]byte, error) {
	rc, err := p.Blob(d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(rc, d)
}

// fileBlob is a blob in a file; it can resume anywhere.
type fileBlob string

func (f fileBlob) open(_ context.Context, offset int64) (io.ReadCloser, int64, error) {
	fh, err := os.Open(string(f))
	if err != nil {
		return nil, 0, permanentError{err}
	}
	if _, err := fh.Seek(offset, io.SeekStart); err != nil {
		fh.Close()
		return nil, 0, permanentError{err}
	}
	return fh, offset, nil
}

// importOCIArchive unpacks the archive's layout into a temporary directory
// (blob files and index.json only) and imports from there.
func (s *Store) importOCIArchive(ctx context.Context, r Reference, opts PullOptions) (*Image, error) {
	dir := s.path("tmp", tempName(""))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := extractLayout(r.Path, dir); err != nil {
		return nil, fmt.Errorf("read OCI archive %s: %w", r.Path, err)
	}
	return s.importLayout(ctx, r, dir, opts)
}

// extractLayout writes the regular files of an OCI layout tar into dir.
// The names are untrusted: anything but a plain relative path is skipped,
// and so are links and devices, which a layout does not need.
func extractLayout(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !filepath.IsLocal(name) || !layoutFile(name) {
			continue
		}
		target := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// layoutFile: index.json, oci-layout, blobs/ALG/HEX.
func layoutFile(name string) bool {
	if name == "index.json" || name == "oci-layout" {
		return true
	}
	parts := strings.Split(name, "/")
	return len(parts) == 3 && parts[0] == "blobs" && !strings.HasPrefix(parts[1], ".") && !strings.HasPrefix(parts[2], ".")
}

// importDockerArchive imports one image from a `docker save` tar. Its
// layers are stored as they are in the archive, uncompressed (blob digest
// = diffID), under a manifest rabbitc writes (docker archives carry none).
func (s *Store) importDockerArchive(ctx context.Context, r Reference, opts PullOptions) (*Image, error) {
	var tag *name.Tag
	if r.Tag != "" {
		t, err := name.NewTag(r.Tag)
		if err != nil {
			return nil, err
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(r.Path, tag)
	if err != nil {
		return nil, fmt.Errorf("read docker archive %s: %w", r.Path, err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read docker archive %s: %w", r.Path, err)
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(config)))
	if err != nil {
		return nil, fmt.Errorf("read docker archive %s: config: %w", r.Path, err)
	}
	var descs []v1.Descriptor
	for _, diffID := range cfg.RootFS.DiffIDs {
		descs = append(descs, v1.Descriptor{MediaType: ociLayerTar, Digest: diffID, Size: -1})
	}
	source := func(d v1.Descriptor) blobSource { return archiveLayer{img: img, diffID: d.Digest} }
	if err := s.fetchLayers(ctx, descs, source, opts.Progress); err != nil {
		return nil, err
	}
	for i := range descs {
		fi, err := os.Stat(s.blobPath(descs[i].Digest))
		if err != nil {
			return nil, err
		}
		descs[i].Size = fi.Size()
	}
	manifest, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     ociManifest,
		Config:        v1.Descriptor{MediaType: ociConfig, Size: int64(len(config)), Digest: sha256Of(config)},
		Layers:        descs,
	})
	if err != nil {
		return nil, err
	}
	h := sha256Of(manifest)
	rec := tagRecord{Digest: h, Source: h, Platform: platformString(opts.platform())}
	return s.finish(ctx, r, rec, manifest, config)
}

// archiveLayer is a layer inside a docker archive, read uncompressed.
type archiveLayer struct {
	img    v1.Image
	diffID v1.Hash
}

func (a archiveLayer) open(context.Context, int64) (io.ReadCloser, int64, error) {
	l, err := a.img.LayerByDiffID(a.diffID)
	if err != nil {
		return nil, 0, permanentError{err}
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, 0, permanentError{err}
	}
	return rc, 0, nil
}
