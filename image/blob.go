package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobSource gives a blob's bytes. open returns a stream that starts at
// offset, or at 0 (start says which) when the source cannot skip ahead:
// a registry that ignores Range, or a file inside an archive.
type blobSource interface {
	open(ctx context.Context, offset int64) (rc io.ReadCloser, start int64, err error)
}

// permanentError is a failure that another attempt would repeat.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

const (
	blobAttempts   = 5
	copyBufferSize = 256 << 10
)

// blobRetryDelay is the wait before attempt n+1 (tests shorten it).
var blobRetryDelay = func(n int) time.Duration { return time.Duration(200<<n) * time.Millisecond }

// progressFunc reports bytes done out of total (total is -1 when unknown).
type progressFunc func(done, total int64)

// putBlob stores the blob d from src unless present. It holds the digest's
// lock, so concurrent pulls of one digest fetch it once; the bytes go to
// tmp/blob-*.partial, which a broken transfer (or a killed process) leaves
// behind for the next attempt to resume; the blob appears under blobs/ by
// rename only after its digest (and size, when d.Size >= 0) has been
// checked. cached is true when nothing had to be fetched.
func (s *Store) putBlob(ctx context.Context, d v1.Descriptor, src blobSource, progress progressFunc) (cached bool, err error) {
	if d.Digest.Algorithm != "sha256" || !validHex(d.Digest.Hex) {
		return false, fmt.Errorf("blob %s: only sha256 digests are supported", d.Digest)
	}
	if fileExists(s.blobPath(d.Digest)) {
		return true, nil
	}
	l, err := s.lockBlob(ctx, d.Digest)
	if err != nil {
		return false, err
	}
	defer l.unlock()
	if fileExists(s.blobPath(d.Digest)) {
		return true, nil // another process fetched it while we waited
	}
	f, err := os.OpenFile(s.partialPath(d.Digest), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer f.Close()
	w, err := resumeWriter(f, d.Size)
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	err = s.transfer(ctx, w, d, src, progress)
	if err == nil && w.resumed && w.digest() != d.Digest {
		// The bytes kept from before may be what is wrong (a partial file
		// from a registry that changed its mind): one fresh start.
		w.reset()
		err = s.transfer(ctx, w, d, src, progress)
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if got := w.digest(); got != d.Digest {
		os.Remove(f.Name())
		return false, fmt.Errorf("blob %s: received bytes have digest %s (the source sent wrong data; nothing was stored)", d.Digest, got)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if err := os.Rename(f.Name(), s.blobPath(d.Digest)); err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return false, nil
}

// transfer fills w up to d.Size (or the end of the stream when the size is
// unknown), retrying broken transfers from where they stopped.
func (s *Store) transfer(ctx context.Context, w *partialWriter, d v1.Descriptor, src blobSource, progress progressFunc) error {
	for attempt := 0; ; attempt++ {
		if d.Size >= 0 && w.n == d.Size {
			return nil // complete already: resumed from a finished partial file
		}
		err := w.fill(ctx, d.Size, src, progress)
		if err == nil {
			return nil
		}
		var perm permanentError
		if ctx.Err() != nil || errors.As(err, &perm) || attempt+1 >= blobAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(blobRetryDelay(attempt)):
		}
	}
}

// partialWriter appends to a partial blob file and hashes what it holds.
type partialWriter struct {
	f       *os.File
	h       hash.Hash
	n       int64
	resumed bool // bytes from an earlier attempt or process are part of it
}

// resumeWriter takes over what the partial file already holds (hashing it
// again: its bytes are not trusted until the whole blob is verified).
func resumeWriter(f *os.File, size int64) (*partialWriter, error) {
	w := &partialWriter{f: f, h: sha256.New()}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if size >= 0 && fi.Size() > size {
		w.reset()
		return w, nil
	}
	n, err := io.Copy(w.h, io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return nil, err
	}
	w.n, w.resumed = n, n > 0
	return w, nil
}

func (w *partialWriter) reset() {
	w.f.Truncate(0)
	w.h.Reset()
	w.n, w.resumed = 0, false
}

func (w *partialWriter) digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.h.Sum(nil))}
}

// fill makes one attempt: open src at the current length and append.
func (w *partialWriter) fill(ctx context.Context, size int64, src blobSource, progress progressFunc) error {
	rc, start, err := src.open(ctx, w.n)
	if err != nil {
		return err
	}
	defer rc.Close()
	switch {
	case start == 0 && w.n > 0:
		w.reset() // the source starts over: so do we
	case start != w.n:
		return permanentError{fmt.Errorf("source resumed at byte %d, not %d", start, w.n)}
	}
	if w.n > 0 {
		w.resumed = true
	}
	var r io.Reader = rc
	if size >= 0 {
		// One byte more than needed, to notice a source that sends too much
		// without ever reading an endless stream.
		r = io.LimitReader(rc, size-w.n+1)
	}
	if err := w.copyFrom(r, size, progress); err != nil {
		return err
	}
	if size >= 0 && w.n > size {
		w.reset()
		return permanentError{fmt.Errorf("source sent more than the %d bytes the manifest gives", size)}
	}
	if size >= 0 && w.n < size {
		return fmt.Errorf("source ended at byte %d of %d: %w", w.n, size, io.ErrUnexpectedEOF)
	}
	return nil
}

func (w *partialWriter) copyFrom(r io.Reader, size int64, progress progressFunc) error {
	if _, err := w.f.Seek(w.n, io.SeekStart); err != nil {
		return permanentError{err}
	}
	buf := make([]byte, copyBufferSize)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.f.Write(buf[:n]); err != nil {
				return permanentError{err}
			}
			w.h.Write(buf[:n])
			w.n += int64(n)
			if progress != nil {
				progress(w.n, size)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
