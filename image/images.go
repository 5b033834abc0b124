package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Image is an image in the store.
type Image struct {
	// Ref is the reference the image was found by (canonical form), or "".
	Ref string
	// Digest is the digest of the image manifest (for a multi-platform
	// image: of the platform's manifest, not of the index).
	Digest   v1.Hash
	Manifest *v1.Manifest
	// Config holds Entrypoint, Cmd, Env, WorkingDir, User, StopSignal,
	// ExposedPorts (in Config.Config) and the layers' diffIDs.
	Config *v1.ConfigFile
	// Layers are in order, lowest first.
	Layers []Layer

	store *Store
}

// Layer is one layer of an image.
type Layer struct {
	// Digest and Size are the blob's (compressed, as stored).
	Digest v1.Hash
	Size   int64
	// DiffID is the digest of the uncompressed tar: the caller checks it
	// while unpacking, and names the layer directory by it.
	DiffID    v1.Hash
	MediaType types.MediaType
}

// Open reads the layer's blob from the store (compressed as MediaType says).
func (im *Image) Open(l Layer) (io.ReadCloser, error) {
	f, err := os.Open(im.store.blobPath(l.Digest))
	if err != nil {
		return nil, fmt.Errorf("open layer %s of %s: %w (pull the image again)", l.Digest, im.Digest, err)
	}
	return f, nil
}

// complete reports whether every blob of the image is in the store.
func (im *Image) complete() bool {
	for _, l := range im.Layers {
		if !fileExists(im.store.blobPath(l.Digest)) {
			return false
		}
	}
	return true
}

// tagRecord is what a reference points at.
type tagRecord struct {
	// Digest is the image manifest's.
	Digest v1.Hash `json:"digest"`
	// Source is what the reference resolved to at the source (an index for
	// a multi-platform image): a re-pull whose HEAD gives the same digest
	// has nothing to fetch.
	Source   v1.Hash `json:"source"`
	Platform string  `json:"platform"`
}

type tagsFile struct {
	Tags map[string]tagRecord `json:"tags"`
}

func (s *Store) readTags() (map[string]tagRecord, error) {
	b, err := os.ReadFile(s.path("tags.json"))
	if os.IsNotExist(err) {
		return map[string]tagRecord{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tags: %w", err)
	}
	var tf tagsFile
	if err := json.Unmarshal(b, &tf); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path("tags.json"), err)
	}
	if tf.Tags == nil {
		tf.Tags = map[string]tagRecord{}
	}
	return tf.Tags, nil
}

// Refs lists the references a store under root has (as List names them),
// sorted, reading tags.json alone: unlike Open it creates and removes
// nothing, for a shell's completion of image names.
func Refs(root string) ([]string, error) {
	tags, err := (&Store{root: root}).readTags()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(tags))
	for ref := range tags {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out, nil
}

// writeTags replaces tags.json; the caller holds the meta lock.
func (s *Store) writeTags(tags map[string]tagRecord) error {
	b, err := json.MarshalIndent(tagsFile{Tags: tags}, "", "  ")
	if err != nil {
		return err
	}
	return s.writeFileAtomic(s.path("tags.json"), b)
}

// writeFileAtomic writes through a temporary file in tmp/ and a rename.
func (s *Store) writeFileAtomic(path string, b []byte) error {
	tmp := s.path("tmp", tempName(".json"))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// recordImage makes the image visible (its directory first, then the tag),
// under the meta lock. The caller holds the gc lock shared and has stored
// every blob.
func (s *Store) recordImage(ctx context.Context, key string, rec tagRecord, manifest, config []byte) error {
	l, err := s.lockMeta(ctx)
	if err != nil {
		return err
	}
	defer l.unlock()
	if !fileExists(s.imageDir(rec.Digest)) {
		tmp := s.path("tmp", tempName(""))
		if err := os.Mkdir(tmp, 0o700); err != nil {
			return fmt.Errorf("record image: %w", err)
		}
		err := os.WriteFile(filepath.Join(tmp, "manifest.json"), manifest, 0o600)
		if err == nil {
			err = os.WriteFile(filepath.Join(tmp, "config.json"), config, 0o600)
		}
		if err == nil {
			err = os.Rename(tmp, s.imageDir(rec.Digest))
		}
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("record image %s: %w", rec.Digest, err)
		}
	}
	tags, err := s.readTags()
	if err != nil {
		return err
	}
	tags[key] = rec
	return s.writeTags(tags)
}

// loadImage reads an image record.
func (s *Store) loadImage(h v1.Hash) (*Image, error) {
	dir := s.imageDir(h)
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", h, err)
	}
	cb, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", h, err)
	}
	return s.newImage(h, mb, cb)
}

func (s *Store) newImage(h v1.Hash, manifest, config []byte) (*Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", h, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", h, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: the manifest has %d layers but the config %d diffIDs (a broken image)", h, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	im := &Image{Digest: h, Manifest: m, Config: cfg, store: s}
	for i, l := range m.Layers {
		im.Layers = append(im.Layers, Layer{Digest: l.Digest, Size: l.Size, DiffID: cfg.RootFS.DiffIDs[i], MediaType: l.MediaType})
	}
	return im, nil
}

// Summary is one image in List.
type Summary struct {
	Digest   v1.Hash
	Refs     []string // sorted
	Created  time.Time
	Size     int64 // compressed, the sum of the layer blobs
	Platform string
}

// List returns the images in the store, most recently created first.
func (s *Store) List() ([]Summary, error) {
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	byDigest := map[v1.Hash][]string{}
	for ref, rec := range tags {
		byDigest[rec.Digest] = append(byDigest[rec.Digest], ref)
	}
	digests, err := s.imageDigests()
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, h := range digests {
		im, err := s.loadImage(h)
		if err != nil {
			continue // being removed right now, or half-written by a dead process
		}
		sum := Summary{Digest: h, Refs: byDigest[h], Created: im.Config.Created.Time,
			Platform: platformString(v1.Platform{OS: im.Config.OS, Architecture: im.Config.Architecture, Variant: im.Config.Variant})}
		sort.Strings(sum.Refs)
		for _, l := range im.Layers {
			sum.Size += l.Size
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

func (s *Store) imageDigests() ([]v1.Hash, error) {
	ents, err := os.ReadDir(s.path("images", "sha256"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []v1.Hash
	for _, e := range ents {
		if validHex(e.Name()) {
			out = append(out, v1.Hash{Algorithm: "sha256", Hex: e.Name()})
		}
	}
	return out, nil
}

// Inspect finds an image by reference (as given to Pull), by digest
// (sha256:...) or by a unique prefix of at least 4 hex digits of its digest.
func (s *Store) Inspect(ref string) (*Image, error) {
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	key, h, err := s.resolve(tags, ref)
	if err != nil {
		return nil, err
	}
	im, err := s.loadImage(h)
	if err != nil {
		return nil, err
	}
	im.Ref = key
	return im, nil
}

var errNotFound = errors.New("no such image")

// resolve maps what the user typed to a tag key (or "" for a digest) and
// a manifest digest.
func (s *Store) resolve(tags map[string]tagRecord, ref string) (string, v1.Hash, error) {
	if r, err := ParseReference(ref); err == nil {
		if rec, ok := tags[r.String()]; ok {
			return r.String(), rec.Digest, nil
		}
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	if len(prefix) >= 4 && len(prefix) <= 64 && isHex(prefix) {
		digests, err := s.imageDigests()
		if err != nil {
			return "", v1.Hash{}, err
		}
		var found []v1.Hash
		for _, h := range digests {
			if strings.HasPrefix(h.Hex, prefix) {
				found = append(found, h)
			}
		}
		if len(found) == 1 {
			return "", found[0], nil
		}
		if len(found) > 1 {
			return "", v1.Hash{}, fmt.Errorf("image %s: the prefix matches %d images (give more digits)", ref, len(found))
		}
	}
	return "", v1.Hash{}, fmt.Errorf("image %s: %w (see rabbitc images)", ref, errNotFound)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2))
	return err == nil && strings.ToLower(s) == s
}

// Removed says what Remove did.
type Removed struct {
	Untagged []string
	Deleted  []v1.Hash // image manifests deleted
	// Layers are the diffIDs that no image uses any more. Their directories
	// have been moved out of layers/ into Trash, where a later pull cannot
	// find them; the caller deletes Trash from inside the user namespace
	// the layers were unpacked in (what it leaves is retried by Prune).
	Layers []v1.Hash
	Trash  []string
}

// Remove untags ref; an image left without tags is deleted, with its blobs
// and layers that no other image uses. Given a digest, it removes every tag
// of that image. The caller checks that no container uses the image.
func (s *Store) Remove(ctx context.Context, ref string) (*Removed, error) {
	unlock, err := s.lockExclusive(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	key, h, err := s.resolve(tags, ref)
	if err != nil {
		return nil, err
	}
	res := &Removed{}
	for k, rec := range tags {
		if k == key || (key == "" && rec.Digest == h) {
			delete(tags, k)
			res.Untagged = append(res.Untagged, k)
		}
	}
	sort.Strings(res.Untagged)
	if err := s.writeTags(tags); err != nil {
		return nil, err
	}
	if stillTagged(tags, h) {
		return res, nil
	}
	res.Deleted = append(res.Deleted, h)
	if err := s.deleteImage(h); err != nil {
		return res, err
	}
	g, err := s.collect()
	if err != nil {
		return res, err
	}
	res.Layers, res.Trash = g.Layers, g.Trash
	return res, nil
}

func stillTagged(tags map[string]tagRecord, h v1.Hash) bool {
	for _, rec := range tags {
		if rec.Digest == h {
			return true
		}
	}
	return false
}

// lockExclusive stops pulls and unpacks (gc) and metadata writers (meta).
func (s *Store) lockExclusive(ctx context.Context) (func(), error) {
	gc, err := s.lockGC(ctx, unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	meta, err := s.lockMeta(ctx)
	if err != nil {
		gc.unlock()
		return nil, err
	}
	return func() { meta.unlock(); gc.unlock() }, nil
}

func (s *Store) deleteImage(h v1.Hash) error {
	// Rename first, so a reader never sees half a record.
	tmp := s.path("tmp", tempName(""))
	if err := os.Rename(s.imageDir(h), tmp); err != nil {
		return fmt.Errorf("delete image %s: %w", h, err)
	}
	return os.RemoveAll(tmp)
}

// Pruned says what Prune removed.
type Pruned struct {
	Images []v1.Hash // records no tag pointed at
	Blobs  int
	Bytes  int64
	// Layers and Trash as in Removed.
	Layers []v1.Hash
	Trash  []string
}

// Prune deletes what no tagged image uses: untagged image records, blobs,
// layers (moved to Trash for the caller), partial downloads, lock files,
// and the temporary files of dead processes.
func (s *Store) Prune(ctx context.Context) (*Pruned, error) {
	unlock, err := s.lockExclusive(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	digests, err := s.imageDigests()
	if err != nil {
		return nil, err
	}
	res := &Pruned{}
	for _, h := range digests {
		if !stillTagged(tags, h) {
			if err := s.deleteImage(h); err != nil {
				return res, err
			}
			res.Images = append(res.Images, h)
		}
	}
	g, err := s.collect()
	if err != nil {
		return res, err
	}
	res.Blobs, res.Bytes, res.Layers = g.Blobs, g.Bytes, g.Layers
	// Nobody pulls while we hold gc: every partial download and lock file
	// is unused.
	s.removeMatching("tmp", "blob-")
	s.removeMatching("locks", "blob-")
	s.removeMatching("locks", "layer-")
	res.Trash = append(g.Trash, s.removeStaleTemps()...)
	return res, nil
}

func (s *Store) removeMatching(dir, prefix string) {
	ents, _ := os.ReadDir(s.path(dir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(s.path(dir, e.Name()))
		}
	}
}

type garbage struct {
	Blobs  int
	Bytes  int64
	Layers []v1.Hash
	Trash  []string
}

// collect deletes the blobs and moves away the layers that no image record
// uses. The caller holds the store exclusively.
func (s *Store) collect() (*garbage, error) {
	usedBlobs, usedLayers := map[string]bool{}, map[string]bool{}
	digests, err := s.imageDigests()
	if err != nil {
		return nil, err
	}
	for _, h := range digests {
		im, err := s.loadImage(h)
		if err != nil {
			return nil, fmt.Errorf("collect garbage: %w (remove %s by hand)", err, s.imageDir(h))
		}
		for _, l := range im.Layers {
			usedBlobs[l.Digest.Hex], usedLayers[l.DiffID.Hex] = true, true
		}
	}
	g := &garbage{}
	ents, _ := os.ReadDir(s.path("blobs", "sha256"))
	for _, e := range ents {
		if usedBlobs[e.Name()] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			g.Bytes += fi.Size()
		}
		if os.Remove(s.path("blobs", "sha256", e.Name())) == nil {
			g.Blobs++
		}
	}
	ents, _ = os.ReadDir(s.path("layers", "sha256"))
	for _, e := range ents {
		if !validHex(e.Name()) || usedLayers[e.Name()] {
			continue
		}
		trash := s.path("layers", "sha256", layerTempPrefix+tempName(""))
		if err := os.Rename(s.path("layers", "sha256", e.Name()), trash); err != nil {
			return g, fmt.Errorf("remove layer %s: %w", e.Name(), err)
		}
		g.Layers = append(g.Layers, v1.Hash{Algorithm: "sha256", Hex: e.Name()})
		g.Trash = append(g.Trash, trash)
	}
	return g, nil
}

// readVerified reads a small blob whole and checks its digest (and size
// when known). Configs are small; the limit stops an endless one.
func readVerified(r io.Reader, d v1.Descriptor) ([]byte, error) {
	const maxSmallBlob = 16 << 20
	limit := int64(maxSmallBlob)
	if d.Size >= 0 && d.Size < limit {
		limit = d.Size
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Digest, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes", d.Digest, limit)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); d.Digest.Algorithm != "sha256" || got != d.Digest.Hex {
		return nil, fmt.Errorf("read %s: received bytes have digest sha256:%s (the source sent wrong data)", d.Digest, got)
	}
	return b, nil
}
