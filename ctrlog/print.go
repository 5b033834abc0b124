package ctrlog

import "io"

// printer writes records to the stream they came from, each line
// prefixed with its timestamp when asked. It buffers one stream at a time,
// so the two stay in the order they were logged.
type printer struct {
	out     [2]io.Writer
	stamp   bool
	midLine [2]bool // the stream's last line has not ended
	buf     []byte
	bufOf   int // the stream buf holds
}

func (p *printer) print(r record) error {
	if r.stream != p.bufOf || len(p.buf) >= 32<<10 {
		if err := p.flush(); err != nil {
			return err
		}
		p.bufOf = r.stream
	}
	if p.stamp && !p.midLine[r.stream] {
		p.buf = r.time.UTC().AppendFormat(p.buf, timeLayout)
		p.buf = append(p.buf, ' ')
	}
	p.buf = append(p.buf, r.content...)
	if !r.partial {
		p.buf = append(p.buf, '\n')
	}
	p.midLine[r.stream] = r.partial
	return nil
}

func (p *printer) flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	_, err := p.out[p.bufOf].Write(p.buf)
	p.buf = p.buf[:0]
	return err
}

// tailer keeps the last n lines, each joined from its records.
type tailer struct {
	n     int
	lines []*record // a ring once it holds n
	next  int       // the oldest line, once the ring is full
	open  [2]*record
}

func (t *tailer) add(r record) error {
	if l := t.open[r.stream]; l != nil {
		l.content = append(l.content, r.content...)
		l.partial = r.partial
		if !r.partial {
			t.open[r.stream] = nil
		}
		return nil
	}
	l := &record{time: r.time, stream: r.stream, partial: r.partial, content: append([]byte(nil), r.content...)}
	if r.partial {
		t.open[r.stream] = l
	}
	switch {
	case t.n == 0:
	case len(t.lines) < t.n:
		t.lines = append(t.lines, l)
	default:
		t.lines[t.next] = l
		t.next = (t.next + 1) % t.n
	}
	return nil
}

// flush hands the lines kept, oldest first, to sink.
func (t *tailer) flush(sink func(record) error) error {
	for i := range t.lines {
		if err := sink(*t.lines[(t.next+i)%len(t.lines)]); err != nil {
			return err
		}
	}
	return nil
}
