package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Store is an image store rooted at one directory. Several processes may use
// the same root at once; they coordinate with flock(2) on files in locks/.
type Store struct {
	root string
}

// layerTempPrefix starts the names of layer directories being unpacked. They
// sit beside the finished layers so that CommitLayer is a rename within one
// directory, which needs no write permission on the unpacked root itself
// (a rename into another directory would, to rewrite its "..").
const layerTempPrefix = ".tmp-"

// Open opens (creating it if needed) the store at root, usually
// $XDG_DATA_HOME/rabbitc, and removes the temporary files of processes that
// have exited. Files it cannot remove (a layer unpacked in a user namespace
// may hold files the user cannot delete from outside) are left for Prune to
// report.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open image store %s: %w", root, err)
	}
	s := &Store{root: abs}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "images/sha256", "locks", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	s.removeStaleTemps()
	return s, nil
}

// Root is the directory the store lives in.
func (s *Store) Root() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) blobPath(h v1.Hash) string { return s.path("blobs", h.Algorithm, h.Hex) }
func (s *Store) imageDir(h v1.Hash) string { return s.path("images", h.Algorithm, h.Hex) }
func (s *Store) partialPath(h v1.Hash) string {
	return s.path("tmp", "blob-"+h.Algorithm+"-"+h.Hex+".partial")
}

// LayerDir is where the unpacked layer with this diffID lives once committed.
func (s *Store) LayerDir(diffID v1.Hash) string {
	return s.path("layers", diffID.Algorithm, diffID.Hex)
}

// HasLayer reports whether the layer with this diffID has been committed.
func (s *Store) HasLayer(diffID v1.Hash) bool {
	fi, err := os.Lstat(s.LayerDir(diffID))
	return err == nil && fi.IsDir()
}

// TempDir makes an empty directory to unpack one layer into, on the same
// filesystem as the layers and in the same parent directory, so CommitLayer
// can rename it into place. Its name carries this process's pid and start
// time: if the process dies, a later Open or Prune removes it.
func (s *Store) TempDir() (string, error) {
	dir := s.path("layers", "sha256", layerTempPrefix+tempName(""))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("make layer temp dir: %w", err)
	}
	return dir, nil
}

// CommitLayer makes the unpacked layer in tmpDir (from TempDir) visible as
// the layer diffID, by rename. The caller has verified the diffID while
// unpacking. If the layer exists already (unpacked concurrently without
// LockLayer), the error wraps fs.ErrExist and tmpDir is left to the caller
// to delete, from inside the user namespace it was unpacked in.
func (s *Store) CommitLayer(tmpDir string, diffID v1.Hash) error {
	if filepath.Dir(tmpDir) != s.path("layers", "sha256") ||
		!strings.HasPrefix(filepath.Base(tmpDir), layerTempPrefix) {
		return fmt.Errorf("commit layer %s: %s is not a directory from TempDir", diffID, tmpDir)
	}
	if diffID.Algorithm != "sha256" || !validHex(diffID.Hex) {
		return fmt.Errorf("commit layer %s: not a sha256 digest", diffID)
	}
	// RENAME_NOREPLACE: an empty directory at the target must not be
	// silently replaced either; whoever made it believes it is the layer.
	err := unix.Renameat2(unix.AT_FDCWD, tmpDir, unix.AT_FDCWD, s.LayerDir(diffID), unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return fmt.Errorf("commit layer %s: %w", diffID, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("commit layer %s: %w", diffID, err)
	}
	return nil
}

// LockLayer serialises the unpacking of one layer between processes: take
// it, check HasLayer, unpack into TempDir, CommitLayer, unlock. It also
// keeps Remove and Prune from running until unlock is called, so the blob
// being unpacked does not disappear underneath.
func (s *Store) LockLayer(ctx context.Context, diffID v1.Hash) (unlock func(), err error) {
	gc, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	l, err := lockFile(ctx, s.path("locks", "layer-"+diffID.Algorithm+"-"+diffID.Hex), unix.LOCK_EX)
	if err != nil {
		gc.unlock()
		return nil, err
	}
	return func() { l.unlock(); gc.unlock() }, nil
}

// lockGC is shared by pulls and unpacks and exclusive for Remove and
// Prune: nothing is deleted while a pull has fetched blobs that no image
// record mentions yet.
func (s *Store) lockGC(ctx context.Context, how int) (*fileLock, error) {
	return lockFile(ctx, s.path("locks", "gc"), how)
}

// lockMeta guards read-modify-write of tags.json and the image records.
func (s *Store) lockMeta(ctx context.Context) (*fileLock, error) {
	return lockFile(ctx, s.path("locks", "meta"), unix.LOCK_EX)
}

func (s *Store) lockBlob(ctx context.Context, h v1.Hash) (*fileLock, error) {
	return lockFile(ctx, s.path("locks", "blob-"+h.Algorithm+"-"+h.Hex), unix.LOCK_EX)
}

func validHex(h string) bool {
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// tempName is "<pid>-<starttime>-<random><suffix>": the pid and start time
// say whether the owner still runs (a pid alone may have been reused).
func tempName(suffix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%d-%d-%s%s", os.Getpid(), selfStartTime, hex.EncodeToString(b[:]), suffix)
}

var selfStartTime = processStartTime(os.Getpid())

// processStartTime is field 22 of /proc/PID/stat (clock ticks since boot),
// or 0 when the process does not exist.
func processStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may contain spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0
	}
	t, _ := strconv.ParseUint(fields[19], 10, 64)
	return t
}

// ownerAlive reports whether the process named in a tempName still runs.
// Names that are not tempNames count as alive: they are not ours to remove.
func ownerAlive(name string) bool {
	parts := strings.SplitN(name, "-", 3)
	if len(parts) != 3 {
		return true
	}
	pid, err1 := strconv.Atoi(parts[0])
	start, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return processStartTime(pid) == start
}

// StaleTemps lists what Open could not remove of processes that are gone:
// a layer half-unpacked in a user namespace holds files of the container's
// ids, which the caller removes from such a namespace.
func (s *Store) StaleTemps() []string { return s.staleTemps() }

// staleTemps lists the temporary files and directories whose owner is gone.
func (s *Store) staleTemps() []string {
	var stale []string
	if ents, err := os.ReadDir(s.path("tmp")); err == nil {
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "blob-") && !ownerAlive(e.Name()) {
				stale = append(stale, s.path("tmp", e.Name()))
			}
		}
	}
	if ents, err := os.ReadDir(s.path("layers", "sha256")); err == nil {
		for _, e := range ents {
			n, ok := strings.CutPrefix(e.Name(), layerTempPrefix)
			if ok && !ownerAlive(n) {
				stale = append(stale, s.path("layers", "sha256", e.Name()))
			}
		}
	}
	return stale
}

// removeStaleTemps removes what it can and returns the paths it could not.
func (s *Store) removeStaleTemps() []string {
	var left []string
	for _, p := range s.staleTemps() {
		if err := os.RemoveAll(p); err != nil {
			left = append(left, p)
		}
	}
	return left
}
