package ctrlog

import (
	"bytes"
	"time"
)

const (
	// MaxLine is the most content one record holds: a longer line is
	// split into P records of MaxLine bytes and a last F record.
	MaxLine = 16 << 10
	// DefaultMaxSize is the size of ctr.log at which it is rotated when
	// Open is given no size: a log then keeps at most 20 MiB.
	DefaultMaxSize = 10 << 20

	// timeLayout is RFC 3339 with a fixed nine-digit fraction, as docker's
	// `logs -t` prints it: every record's timestamp has the same width.
	timeLayout = "2006-01-02T15:04:05.000000000Z07:00"
)

// The streams, indexed as in printer and tailer.
var streams = [2]string{"stdout", "stderr"}

// record is one line of the log.
type record struct {
	time    time.Time
	stream  int    // 0 stdout, 1 stderr
	partial bool   // P: the content does not end its line
	content []byte // without the newline; aliases the line it was parsed from
}

// nextRecord cuts the content of the next record off p: up to its first
// newline (an F record, the newline dropped), or at most max bytes of a
// line that goes on (a P record). It returns what is left of p.
func nextRecord(p []byte, max int) (content []byte, partial bool, rest []byte) {
	if i := bytes.IndexByte(p[:min(len(p), max+1)], '\n'); i >= 0 {
		return p[:i], false, p[i+1:]
	}
	if len(p) > max {
		return p[:max], true, p[max:]
	}
	return p, true, nil
}

// recordLen is the length of the line appendRecord writes.
func recordLen(ts []byte, stream int, content []byte) int {
	return len(ts) + 1 + len(streams[stream]) + 3 + len(content) + 1
}

// appendRecord appends one record, its newline included, to b; ts is the
// timestamp already formatted with timeLayout.
func appendRecord(b, ts []byte, stream int, partial bool, content []byte) []byte {
	b = append(b, ts...)
	b = append(b, ' ')
	b = append(b, streams[stream]...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, content...)
	return append(b, '\n')
}

// parseRecord parses one line of the log, without its newline. An F
// record with empty content may lack the space after its tag.
func parseRecord(line []byte) (record, bool) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return record{}, false
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return record{}, false
	}
	tag, content, _ := bytes.Cut(rest, []byte{' '})
	var r record
	switch string(stream) {
	case "stdout":
	case "stderr":
		r.stream = 1
	default:
		return record{}, false
	}
	switch string(tag) {
	case "F":
	case "P":
		r.partial = true
	default:
		return record{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return record{}, false
	}
	r.time, r.content = t, content
	return r, true
}
