package userns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The sync protocol between the parent and the stages, over one
// SOCK_SEQPACKET socketpair (each message one packet, fds by SCM_RIGHTS):
//
//	parent                      sandbox (stage 1)            init (stage 2)
//	  | -- Spec ---------------------> | (the maps are written meanwhile)
//	  |                                | starts init ------------> |
//	  | <---------------- ChildHello | (its parent-death handler is armed)
//	  | <------ InitStarted{Pid} [pidfd] | closes its end
//	  | -- Spec -------------------------------------------------> |
//	  |    (only once the maps are written)                        |
//	  | <------------------------------------- InitReady [pty fd] |
//	  | -- Start ------------------------------------------------> |
//	  | <------------ NetFilterInstalled [listener] (if asked for) |
//	  | <------------------ EOF (exec succeeded, fd was CLOEXEC)   |
//	  |                  or Error{Code 126/127} (exec failed)      |
//
// Any stage may send Error instead of the message the parent waits for.
// Only one process reads the child end at a time: the sandbox its Spec,
// before it starts init, and init afterwards. When rabbitc starts init
// itself (nothing published, no sandbox), init sends ChildHello and the
// sandbox's Spec and InitStarted are skipped. NetFilterInstalled comes only
// when init's spec asks for the network filter (cmd/rabbitc, netaccel): it
// carries the filter's listener, or, without one, why init has none.

// Message types, named for who sends them and what finished.
const (
	msgChildHello  = "ChildHello"
	msgSpec        = "Spec"
	msgInitStarted = "InitStarted"
	msgInitReady   = "InitReady"
	msgStart       = "Start"
	msgExecReady   = "ExecReady"
	msgNetFilter   = "NetFilterInstalled"
	msgError       = "Error"
)

// Message is one packet on the sync channel.
type Message struct {
	Type  string `json:"type"`
	Pid   int    `json:"pid,omitempty"`
	Stage string `json:"stage,omitempty"`
	Msg   string `json:"msg,omitempty"`
	Code  int    `json:"code,omitempty"`
	// Spec is the stage's settings as JSON (or, with Start, what init needs
	// for its last steps). It travels after the envelope
	// and a newline, not inside it: embedded, the largest message would be
	// scanned twice on each side (compacted on send, skipped over and then
	// decoded on receipt).
	Spec json.RawMessage `json:"-"`
}

// StageError is an Error message received from a stage.
type StageError struct {
	Stage string
	Msg   string
	Code  int // the exit code the stage asks for (0: runtime error)
}

func (e *StageError) Error() string { return "[" + e.Stage + "] " + e.Msg }

// ErrEOF is returned when the other end closed the channel.
var ErrEOF = errors.New("sync channel closed")

// Channel is one end of the sync socketpair.
type Channel struct{ f *os.File }

// NewChannelPair returns the parent's end and the child's end. Both are
// close-on-exec; the child's end is passed on through ExtraFiles.
func NewChannelPair() (parent *Channel, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return &Channel{os.NewFile(uintptr(fds[0]), "sync-parent")}, os.NewFile(uintptr(fds[1]), "sync-child"), nil
}

// NewChannel wraps an inherited descriptor.
func NewChannel(f *os.File) *Channel { return &Channel{f} }

// File is the underlying descriptor.
func (c *Channel) File() *os.File { return c.f }

// Close closes this end.
func (c *Channel) Close() error { return c.f.Close() }

const maxMessage = 1 << 20

func (c *Channel) send(m Message, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if m.Spec != nil {
		b = append(append(b, '\n'), m.Spec...)
	}
	if len(b) > maxMessage {
		return fmt.Errorf("send %s: message too large", m.Type)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	for {
		err = unix.Sendmsg(int(c.f.Fd()), b, oob, nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return nil
}

func (c *Channel) recv() (Message, []*os.File, error) {
	// Peek at the packet's length first: most messages are a few bytes,
	// and a buffer of maxMessage for each would be a megabyte of resident
	// memory in every stage.
	var n, oobn int
	var err error
	for {
		n, _, _, _, err = unix.Recvmsg(int(c.f.Fd()), nil, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		if err != unix.EINTR {
			break
		}
	}
	if err == nil {
		buf := make([]byte, max(n, 1))
		oob := make([]byte, unix.CmsgSpace(4*4))
		for {
			n, oobn, _, _, err = unix.Recvmsg(int(c.f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
			if err != unix.EINTR {
				break
			}
		}
		return c.decode(buf, n, oob, oobn, err)
	}
	return c.decode(nil, 0, nil, 0, err)
}

func (c *Channel) decode(buf []byte, n int, oob []byte, oobn int, err error) (Message, []*os.File, error) {
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			return Message{}, nil, ErrEOF
		}
		return Message{}, nil, fmt.Errorf("receive: %w", err)
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return Message{}, nil, fmt.Errorf("receive: %w", err)
		}
		for _, cm := range msgs {
			fds, err := unix.ParseUnixRights(&cm)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "received"))
			}
		}
	}
	if n == 0 {
		closeAll(files)
		return Message{}, nil, ErrEOF
	}
	// The envelope, compact JSON, never holds a raw newline: one ends it.
	env, spec, hasSpec := bytes.Cut(buf[:n], []byte{'\n'})
	var m Message
	if err := json.Unmarshal(env, &m); err != nil {
		closeAll(files)
		return Message{}, nil, fmt.Errorf("receive: %w", err)
	}
	if hasSpec {
		m.Spec = spec
	}
	return m, files, nil
}

// waitFor receives one message and checks its type, like rootlesskit's
// messages.WaitFor: an Error becomes a *StageError, anything else unexpected
// an error naming both types.
func (c *Channel) waitFor(typ string) (Message, []*os.File, error) {
	m, files, err := c.recv()
	if err != nil {
		if err == ErrEOF {
			return m, nil, fmt.Errorf("waiting for %s: %w", typ, err)
		}
		return m, nil, err
	}
	if m.Type == msgError {
		closeAll(files)
		return m, nil, &StageError{Stage: m.Stage, Msg: m.Msg, Code: m.Code}
	}
	if m.Type != typ {
		closeAll(files)
		return m, nil, fmt.Errorf("waiting for %s: got %s", typ, m.Type)
	}
	return m, files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// SendChildHello tells the parent the sandbox runs and will clean up
// after the parent if it dies.
func (c *Channel) SendChildHello() error { return c.send(Message{Type: msgChildHello}) }

// WaitChildHello is the parent's first wait.
func (c *Channel) WaitChildHello() error { _, _, err := c.waitFor(msgChildHello); return err }

// SendSpec sends the stage's settings, JSON-encoded; a json.RawMessage is
// sent as it is (the parent encodes init's spec while it waits for init).
func (c *Channel) SendSpec(v any) error {
	b, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encode spec: %w", err)
		}
	}
	return c.send(Message{Type: msgSpec, Spec: b})
}

// WaitSpec receives the stage's settings into v.
func (c *Channel) WaitSpec(v any) error {
	m, _, err := c.waitFor(msgSpec)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Spec, v); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	return nil
}

// SendInitStarted reports init's pid as the host sees it, with a pidfd of
// init: the parent kills the container through it should the sandbox die
// first (a payload can clear the parent-death signal that would end it).
func (c *Channel) SendInitStarted(pid int, pidfd *os.File) error {
	if pidfd != nil {
		return c.send(Message{Type: msgInitStarted, Pid: pid}, pidfd)
	}
	return c.send(Message{Type: msgInitStarted, Pid: pid})
}

// WaitInitStarted returns init's host pid and its pidfd (nil if the
// sandbox had none).
func (c *Channel) WaitInitStarted() (int, *Pidfd, error) {
	m, files, err := c.waitFor(msgInitStarted)
	if err != nil || len(files) == 0 {
		return m.Pid, nil, err
	}
	closeAll(files[1:])
	return m.Pid, NewPidfd(files[0]), nil
}

// SendInitReady reports that the root is pivoted and the payload can start;
// with a tty it carries the pty master.
func (c *Channel) SendInitReady(pty *os.File) error {
	if pty != nil {
		return c.send(Message{Type: msgInitReady}, pty)
	}
	return c.send(Message{Type: msgInitReady})
}

// WaitInitReady returns the pty master, if init sent one.
func (c *Channel) WaitInitReady() (*os.File, error) {
	_, files, err := c.waitFor(msgInitReady)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, nil
	}
	closeAll(files[1:])
	return files[0], nil
}

// SendStart lets init exec the payload. v, if not nil, is what init needs
// only for its last steps, JSON-encoded (the parent prepares it while init
// sets up the root).
func (c *Channel) SendStart(v any) error {
	m := Message{Type: msgStart}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode start: %w", err)
		}
		m.Spec = b
	}
	return c.send(m)
}

// WaitStart is init's last wait before exec. What came with Start is
// decoded into v; v is left alone when nothing came.
func (c *Channel) WaitStart(v any) error {
	m, _, err := c.waitFor(msgStart)
	if err != nil || m.Spec == nil {
		return err
	}
	if err := json.Unmarshal(m.Spec, v); err != nil {
		return fmt.Errorf("decode start: %w", err)
	}
	return nil
}

// SendExecReady reports that the exec stage has set up the command and is
// about to exec it, with a pidfd of itself (the command to be, for the
// signals the caller forwards) and, with a tty, the pty master.
func (c *Channel) SendExecReady(pidfd, pty *os.File) error {
	files := []*os.File{pidfd}
	if pty != nil {
		files = append(files, pty)
	}
	return c.send(Message{Type: msgExecReady}, files...)
}

// WaitExecReady returns the command's pidfd and the pty master, if the
// exec stage sent one.
func (c *Channel) WaitExecReady() (*Pidfd, *os.File, error) {
	_, files, err := c.waitFor(msgExecReady)
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("waiting for %s: no pidfd came with it", msgExecReady)
	}
	var pty *os.File
	if len(files) > 1 {
		pty = files[1]
		closeAll(files[2:])
	}
	return NewPidfd(files[0]), pty, nil
}

// SendNetFilterInstalled passes the listener of the network filter init
// installed last before exec; with listener nil, why says why it installed
// none (the container then runs without it).
func (c *Channel) SendNetFilterInstalled(listener *os.File, why error) error {
	if listener != nil {
		return c.send(Message{Type: msgNetFilter}, listener)
	}
	return c.send(Message{Type: msgNetFilter, Msg: why.Error()})
}

// WaitNetFilterInstalled returns the listener, or nil and why init has
// none.
func (c *Channel) WaitNetFilterInstalled() (*os.File, string, error) {
	m, files, err := c.waitFor(msgNetFilter)
	if err != nil {
		return nil, "", err
	}
	if len(files) == 0 {
		if m.Msg == "" {
			m.Msg = "no listener came with " + msgNetFilter
		}
		return nil, m.Msg, nil
	}
	closeAll(files[1:])
	return files[0], "", nil
}

// SendError reports a stage's failure; code is the exit code it asks for
// (126, 127) or 0 for a runtime error.
func (c *Channel) SendError(stage string, err error, code int) error {
	return c.send(Message{Type: msgError, Stage: stage, Msg: err.Error(), Code: code})
}

// WaitExec waits after Start: EOF means the payload was exec'd (init's end
// is close-on-exec); an Error means exec failed.
func (c *Channel) WaitExec() error {
	m, files, err := c.recv()
	closeAll(files)
	if err == ErrEOF || err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Type == msgError {
		return &StageError{Stage: m.Stage, Msg: m.Msg, Code: m.Code}
	}
	return fmt.Errorf("waiting for exec: got %s", m.Type)
}
