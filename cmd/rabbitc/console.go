package main

import (
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// console joins the user's terminal to the container's pty: the host
// terminal in raw mode (restored on every exit path that runs code), bytes
// copied both ways, window size propagated.
type console struct {
	master  *os.File
	restore func()
	outDone chan struct{}
	once    sync.Once
}

func startConsole(master *os.File, interactive bool) (*console, error) {
	c := &console{master: master, restore: func() {}, outDone: make(chan struct{})}
	if term.IsTerminal(0) {
		old, err := term.MakeRaw(0)
		if err != nil {
			return nil, err
		}
		c.restore = func() { term.Restore(0, old) }
	}
	c.resize()
	go func() {
		io.Copy(os.Stdout, master) // ends with EIO when the last slave closes
		close(c.outDone)
	}()
	if interactive {
		go io.Copy(master, os.Stdin)
	}
	return c, nil
}

// resize copies the host terminal's size onto the pty.
func (c *console) resize() {
	for _, fd := range []int{0, 1, 2} {
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
			unix.IoctlSetWinsize(int(c.master.Fd()), unix.TIOCSWINSZ, ws)
			return
		}
	}
}

// Close drains the payload's last output, restores the terminal and closes
// the master.
func (c *console) Close() {
	c.once.Do(func() {
		select {
		case <-c.outDone:
		case <-time.After(2 * time.Second):
		}
		c.restore()
		c.master.Close()
	})
}
