package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Policy says when Pull goes to the source.
type Policy string

const (
	// PullAlways asks the source what the reference points at (one
	// manifest request for a registry) and fetches what is missing. The
	// zero Policy means PullAlways.
	PullAlways Policy = "always"
	// PullMissing uses the stored image when there is one.
	PullMissing Policy = "missing"
	// PullNever uses only the stored image.
	PullNever Policy = "never"
)

// ParsePolicy parses always|missing|never.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PullAlways, PullMissing, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("pull policy %q: use always, missing or never", s)
}

// PullOptions tune Pull. The zero value pulls for this machine's platform.
type PullOptions struct {
	// Platform to select from a multi-platform image; nil: DefaultPlatform.
	Platform *v1.Platform
	Policy   Policy
	// Progress, when set, is called for each layer as bytes arrive, from up
	// to maxParallel goroutines at once.
	Progress func(Progress)
	// Insecure allows plain HTTP and unverified TLS to any registry (plain
	// HTTP to loopback addresses is always allowed).
	Insecure bool
	// Keychain finds credentials; nil: DefaultKeychain (auth.json files).
	Keychain authn.Keychain
}

func (o PullOptions) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return DefaultPlatform()
}

// ProgressState is where a layer's transfer is.
type ProgressState int

const (
	// LayerFetching: bytes are arriving (Done of Total).
	LayerFetching ProgressState = iota
	// LayerCached: the blob was in the store already; nothing was fetched.
	LayerCached
	// LayerDone: fetched and verified.
	LayerDone
)

// Progress is one event about one layer blob.
type Progress struct {
	Digest v1.Hash
	Done   int64
	Total  int64 // -1 when unknown (docker-archive layers)
	State  ProgressState
}

// maxParallel is how many layers download at once.
const maxParallel = 3

// Pull makes the image ref available in the store and returns it: a
// registry reference, oci:DIR[:TAG], oci-archive:FILE[:TAG] or
// docker-archive:FILE[:REF]. The returned diffIDs (Image.Layers) are for
// the caller to verify while unpacking.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	im, err := s.pull(ctx, r, opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	im.Ref = r.String()
	return im, nil
}

func (s *Store) pull(ctx context.Context, r Reference, opts PullOptions) (*Image, error) {
	plat := platformString(opts.platform())
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	prev, havePrev := tags[r.String()]
	local := func() *Image {
		if !havePrev || prev.Platform != plat {
			return nil
		}
		im, err := s.loadImage(prev.Digest)
		if err != nil || !im.complete() {
			return nil
		}
		return im
	}
	switch opts.Policy {
	case PullNever:
		if im := local(); im != nil {
			return im, nil
		}
		return nil, fmt.Errorf("image not in the store for %s (pull it, or use --pull missing)", plat)
	case PullMissing:
		if im := local(); im != nil {
			return im, nil
		}
	case PullAlways, "":
	default:
		return nil, fmt.Errorf("pull policy %q: use always, missing or never", opts.Policy)
	}
	gc, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer gc.unlock()
	switch r.Transport {
	case TransportDocker:
		if _, byDigest := r.Docker.(name.Digest); byDigest {
			if im := local(); im != nil {
				return im, nil // a digest never points elsewhere
			}
		}
		var known *Image
		if im := local(); im != nil {
			known = im
		}
		return s.pullRegistry(ctx, r, known, prev.Source, opts)
	case TransportOCI:
		return s.importLayout(ctx, r, r.Path, opts)
	case TransportOCIArchive:
		return s.importOCIArchive(ctx, r, opts)
	case TransportDockerArchive:
		return s.importDockerArchive(ctx, r, opts)
	}
	return nil, fmt.Errorf("unknown transport %q", r.Transport)
}

// pullRegistry fetches from a registry. known is the stored image the
// reference pointed at (its source digest: knownSource), if any.
func (s *Store) pullRegistry(ctx context.Context, r Reference, known *Image, knownSource v1.Hash, opts PullOptions) (*Image, error) {
	c, err := newRegistryClient(ctx, r.Docker, opts)
	if err != nil {
		return nil, explainRegistryError(r.Docker, err)
	}
	if known != nil {
		head, err := c.head(ctx)
		if err != nil {
			return nil, explainRegistryError(r.Docker, err)
		}
		if head.Digest == knownSource {
			return known, nil
		}
	}
	desc, err := c.get(ctx, r.Docker)
	if err != nil {
		return nil, explainRegistryError(r.Docker, err)
	}
	source := desc.Digest
	want := opts.platform()
	// An index may point at another index; three levels is plenty.
	for depth := 0; desc.MediaType.IsIndex(); depth++ {
		if depth == 3 {
			return nil, errors.New("indexes nested too deep")
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("parse index %s: %w", desc.Digest, err)
		}
		chosen, err := selectPlatform(idx, want)
		if err != nil {
			return nil, err
		}
		if desc, err = c.get(ctx, r.Docker.Context().Digest(chosen.Digest.String())); err != nil {
			return nil, explainRegistryError(r.Docker, err)
		}
	}
	if !desc.MediaType.IsImage() {
		if desc.MediaType.IsSchema1() {
			return nil, errors.New("schema 1 manifests are not supported (push the image again with a current docker, podman or skopeo)")
		}
		return nil, fmt.Errorf("%s is a %s, not an image", desc.Digest, desc.MediaType)
	}
	m, err := parseImageManifest(desc.Manifest)
	if err != nil {
		return nil, err
	}
	config, err := c.fetchSmall(ctx, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", explainRegistryError(r.Docker, err))
	}
	if err := s.fetchLayers(ctx, m.Layers, c.source, opts.Progress); err != nil {
		return nil, explainRegistryError(r.Docker, err)
	}
	rec := tagRecord{Digest: desc.Digest, Source: source, Platform: platformString(want)}
	return s.finish(ctx, r, rec, desc.Manifest, config)
}

// parseImageManifest rejects what we cannot store: layers we may not or
// cannot fetch (foreign layers have URLs outside the registry).
func parseImageManifest(raw []byte) (*v1.Manifest, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	for _, l := range m.Layers {
		if !l.MediaType.IsDistributable() {
			return nil, fmt.Errorf("layer %s is a non-distributable (%s) layer, which rabbitc does not fetch", l.Digest, l.MediaType)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %s has a negative size", l.Digest)
		}
	}
	return m, nil
}

// finish checks the config against the manifest and records the image.
func (s *Store) finish(ctx context.Context, r Reference, rec tagRecord, manifest, config []byte) (*Image, error) {
	im, err := s.newImage(rec.Digest, manifest, config)
	if err != nil {
		return nil, err
	}
	if err := s.recordImage(ctx, r.String(), rec, manifest, config); err != nil {
		return nil, err
	}
	return im, nil
}

// fetchLayers stores the layer blobs, maxParallel at a time; the first
// failure cancels the others.
func (s *Store) fetchLayers(ctx context.Context, layers []v1.Descriptor, source func(v1.Descriptor) blobSource, progress func(Progress)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, d := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := s.fetchLayer(ctx, d, source(d), progress); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

func (s *Store) fetchLayer(ctx context.Context, d v1.Descriptor, src blobSource, progress func(Progress)) error {
	var report progressFunc
	if progress != nil {
		report = func(done, total int64) {
			progress(Progress{Digest: d.Digest, Done: done, Total: total, State: LayerFetching})
		}
	}
	cached, err := s.putBlob(ctx, d, src, report)
	if err != nil || progress == nil {
		return err
	}
	ev := Progress{Digest: d.Digest, Done: d.Size, Total: d.Size, State: LayerDone}
	if cached {
		ev.State = LayerCached
	}
	progress(ev)
	return nil
}

func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// oci media types for manifests rabbitc writes itself (docker-archive).
var (
	ociManifest = types.OCIManifestSchema1
	ociConfig   = types.OCIConfigJSON
	ociLayerTar = types.OCIUncompressedLayer
)
