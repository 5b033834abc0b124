package ctrlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Log is a container's log, open for writing by its monitor.
type Log struct {
	mu     sync.Mutex
	path   string
	max    int64
	f      *os.File // nil while ctr.log cannot be opened (retried on each write)
	size   int64    // bytes in f
	buf    []byte   // the records of one Write
	ts     []byte
	closed bool

	// What went wrong since the last write that succeeded.
	dropped int   // records lost
	cause   error // the last error
	broken  bool  // f may end in part of a record: start the next write on a new line
}

// Open opens the log at path for appending, creating it (mode 0600) if
// needed. ctr.log is rotated when a record would take it past maxSize
// bytes (DefaultMaxSize if maxSize <= 0).
func Open(path string, maxSize int64) (*Log, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	l := &Log{path: path, max: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// open opens ctr.log and learns its size; a file whose last record was cut
// short (its writer was killed mid-record) gets the next one on a line of
// its own.
func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open container log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	if l.size > 0 {
		last := []byte{0}
		f.ReadAt(last, l.size-1)
		l.broken = l.broken || last[0] != '\n'
	}
	return nil
}

// Stream returns the writer of one stream, "stdout" or "stderr" (any other
// name panics: it is a programming error). Its Write never fails and is
// safe to call from several goroutines; each call is one write(2).
func (l *Log) Stream(name string) io.Writer {
	for i, s := range streams {
		if s == name {
			return stream{l, i}
		}
	}
	panic("ctrlog: no stream " + strconv.Quote(name))
}

type stream struct {
	l *Log
	i int
}

func (s stream) Write(p []byte) (int, error) {
	s.l.write(s.i, p)
	return len(p), nil
}

// write logs p as the records of one stream, all with the time of the call.
func (l *Log) write(stream int, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(p) == 0 {
		return
	}
	l.ts = time.Now().UTC().AppendFormat(l.ts[:0], timeLayout)
	n := 0 // records in l.buf
	for len(p) > 0 {
		content, partial, rest := nextRecord(p, MaxLine)
		p = rest
		if held := l.size + int64(len(l.buf)); held > 0 && held+int64(recordLen(l.ts, stream, content)) > l.max {
			l.flush(n)
			n = 0
			l.rotate()
		}
		l.buf = appendRecord(l.buf, l.ts, stream, partial, content)
		n++
	}
	l.flush(n)
}

// flush writes the n records in l.buf with one write(2), preceded by the
// word about records dropped before, if any. A failed write drops them and
// takes back what part of them reached the file.
func (l *Log) flush(n int) {
	defer func() { l.buf = l.buf[:0] }()
	if len(l.buf) == 0 && l.dropped == 0 {
		return
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			l.drop(n, err)
			return
		}
	}
	out := l.buf
	if l.dropped > 0 || l.broken {
		out = append(l.note(), l.buf...)
	}
	w, err := l.f.Write(out)
	if err != nil {
		l.drop(n, err)
		if w > 0 && l.f.Truncate(l.size) != nil {
			l.size += int64(w) // a partial record stays: end it first next time
			l.broken = true
		}
		return
	}
	l.size += int64(w)
	l.dropped, l.cause, l.broken = 0, nil, false
}

func (l *Log) drop(n int, err error) {
	l.dropped += n
	l.cause = err
}

// note is what precedes the next records after a failure: a newline that
// ends a partial record left in the file, and a stderr record counting the
// records lost.
func (l *Log) note() []byte {
	var b []byte
	if l.broken {
		b = append(b, '\n')
	}
	if l.dropped > 0 {
		msg := fmt.Sprintf("rabbitc: %d log records dropped: %v", l.dropped, l.cause)
		b = appendRecord(b, l.ts, 1, false, []byte(msg))
	}
	return b
}

// rotate renames ctr.log to ctr.log.1 and starts a new ctr.log. Should the
// rename fail, ctr.log is emptied instead: the bound holds either way.
func (l *Log) rotate() {
	if l.f == nil {
		return
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		if l.f.Truncate(0) == nil {
			l.size, l.broken = 0, false
		}
		return
	}
	l.f.Close()
	l.f, l.size, l.broken = nil, 0, false
	if err := l.open(); err != nil {
		l.cause = err // the next flush tries again
	}
}

// Close closes the log; later writes are dropped. A note about records
// dropped since the last write that succeeded is written first if it can be.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if l.dropped > 0 {
		l.ts = time.Now().UTC().AppendFormat(l.ts[:0], timeLayout)
		l.flush(0)
	}
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Copy copies src to dst, one read of up to 32 KiB at a time, until src
// ends: a copier goroutine of the monitor, from the payload's stdout or
// stderr pipe to a Stream. EIO, which a pty's master reads once its last
// slave is closed, ends it too.
func Copy(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == io.EOF || errors.Is(err, syscall.EIO):
			return nil
		case err != nil:
			return err
		}
	}
}
