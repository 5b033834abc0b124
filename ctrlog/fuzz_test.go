package ctrlog

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// Any line parses without a panic, and a record that parses is written
// back in our layout as the same record.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"2026-12-07T05:40:00.123456789Z stdout F hello",
		"2026-12-07T05:40:00Z stderr P ",
		"2026-12-07T06:40:00.5+01:00 stdout F",
		"2026-12-07T05:40:00Z stdout F  two  spaces ",
		"2026-12-07T05:40:00Z stdout X x",
		"x stdout F y",
		"",
		"   ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, ok := parseRecord(line)
		if !ok || bytes.IndexByte(line, '\n') >= 0 {
			return
		}
		ts := r.time.UTC().AppendFormat(nil, timeLayout)
		again := appendRecord(nil, ts, r.stream, r.partial, r.content)
		r2, ok := parseRecord(again[:len(again)-1])
		if !ok || !r2.time.Equal(r.time) || r2.stream != r.stream || r2.partial != r.partial || !bytes.Equal(r2.content, r.content) {
			t.Fatalf("%q parsed as %+v, written back as %q, parsed as %+v (%v)", line, r, again, r2, ok)
		}
	})
}

// Whatever the two streams write, in whatever chunks, reading the records
// gives each stream's bytes back.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello\nworld"), []byte{3, 8, 200})
	f.Add([]byte("\n\n\x00\xff\r\n partial"), []byte{1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		maxLine := 1 + len(cuts)%7
		ts := time.Unix(1e9, 0).UTC().AppendFormat(nil, timeLayout)
		var log []byte
		var want [2][]byte
		for i := 0; len(data) > 0; i++ {
			n, stream := len(data), 0
			if i < len(cuts) {
				n, stream = min(len(data), int(cuts[i]>>1)), int(cuts[i]&1)
			}
			chunk := data[:n]
			data = data[n:]
			want[stream] = append(want[stream], chunk...)
			for len(chunk) > 0 {
				content, partial, rest := nextRecord(chunk, maxLine)
				log = appendRecord(log, ts, stream, partial, content)
				chunk = rest
			}
		}
		var got [2]bytes.Buffer
		p := &printer{out: [2]io.Writer{&got[0], &got[1]}}
		r := &file{f: io.NopCloser(bytes.NewReader(log)), buf: make([]byte, 0, readBuf)}
		if _, err := r.drain(p.print); err != nil {
			t.Fatal(err)
		}
		p.flush()
		for i := range want {
			if !bytes.Equal(got[i].Bytes(), want[i]) {
				t.Fatalf("%s: got %q, want %q", streams[i], got[i].Bytes(), want[i])
			}
		}
	})
}
