package userns

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

func TestChannelRoundTrip(t *testing.T) {
	p, cf, err := NewChannelPair()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := NewChannel(cf)

	if err := c.SendChildHello(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitChildHello(); err != nil {
		t.Fatal(err)
	}
	type spec struct{ Args []string }
	if err := p.SendSpec(spec{Args: []string{"sh", "-c", "x"}}); err != nil {
		t.Fatal(err)
	}
	var got spec
	if err := c.WaitSpec(&got); err != nil || len(got.Args) != 3 || got.Args[2] != "x" {
		t.Fatalf("WaitSpec = %v, %v", got, err)
	}
	// an encoded spec goes as it is
	if err := p.SendSpec(json.RawMessage(`{"Args":["true"]}`)); err != nil {
		t.Fatal(err)
	}
	got = spec{}
	if err := c.WaitSpec(&got); err != nil || len(got.Args) != 1 || got.Args[0] != "true" {
		t.Fatalf("WaitSpec of a raw spec = %v, %v", got, err)
	}
	if err := c.SendInitStarted(4242, nil); err != nil {
		t.Fatal(err)
	}
	if pid, pfd, err := p.WaitInitStarted(); err != nil || pid != 4242 || pfd != nil {
		t.Fatalf("WaitInitStarted = %d, %v, %v", pid, pfd, err)
	}
	// with a pidfd: ours, which must arrive as a working handle
	self, err := OpenPidfd(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendInitStarted(4243, self.File()); err != nil {
		t.Fatal(err)
	}
	self.Close()
	if pid, pfd, err := p.WaitInitStarted(); err != nil || pid != 4243 || pfd == nil || pfd.Signal(0) != nil || pfd.Exited() {
		t.Fatalf("WaitInitStarted with a pidfd = %d, %v, %v", pid, pfd, err)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	if err := c.SendInitReady(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, err := p.WaitInitReady()
	if err != nil || f == nil {
		t.Fatalf("WaitInitReady = %v, %v", f, err)
	}
	f.Write([]byte("x"))
	f.Close()
	b := make([]byte, 1)
	if n, _ := r.Read(b); n != 1 || b[0] != 'x' {
		t.Fatalf("passed fd does not reach the pipe")
	}
	// a message of the wrong type is an error naming both
	if err := c.SendInitReady(nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.WaitInitStarted(); err == nil {
		t.Fatal("WaitInitStarted accepted InitReady")
	}
	// an Error becomes a StageError
	if err := c.SendError("init", errors.New("mount proc on /proc: boom"), 127); err != nil {
		t.Fatal(err)
	}
	_, err = p.WaitInitReady()
	var se *StageError
	if !errors.As(err, &se) || se.Code != 127 || se.Stage != "init" {
		t.Fatalf("got %v, want StageError", err)
	}
	// the network filter's listener, or why there is none
	if err := c.SendNetFilterInstalled(pipeEnd(t), nil); err != nil {
		t.Fatal(err)
	}
	if f, why, err := p.WaitNetFilterInstalled(); err != nil || f == nil || why != "" {
		t.Fatalf("WaitNetFilterInstalled = %v, %q, %v", f, why, err)
	} else {
		f.Close()
	}
	if err := c.SendNetFilterInstalled(nil, errors.New("load the network seccomp filter: permission denied")); err != nil {
		t.Fatal(err)
	}
	if f, why, err := p.WaitNetFilterInstalled(); err != nil || f != nil || why != "load the network seccomp filter: permission denied" {
		t.Fatalf("WaitNetFilterInstalled without a listener = %v, %q, %v", f, why, err)
	}
	// EOF after exec
	c.Close()
	if err := p.WaitExec(); err != nil {
		t.Fatalf("WaitExec after close = %v", err)
	}
}

// pipeEnd is a descriptor to pass: the write end of a pipe.
func pipeEnd(t *testing.T) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { w.Close() })
	return w
}

func TestChannelLargeMessage(t *testing.T) {
	p, cf, err := NewChannelPair()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := NewChannel(cf)
	defer c.Close()
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	type spec struct{ Blob string }
	go p.SendSpec(spec{Blob: string(big)})
	var got spec
	if err := c.WaitSpec(&got); err != nil || got.Blob != string(big) {
		t.Fatalf("WaitSpec of a 200 KiB spec: len %d, %v", len(got.Blob), err)
	}
}
