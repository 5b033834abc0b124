package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// RunMapped runs `EXE init STAGE` as root of a new user namespace with the
// containers' mappings (WriteMaps), in the host's other namespaces, sends
// it req and waits for its reply. files are inherited from fd 4 on.
//
// The image store's files belong to the containers' ids (a layer's file of
// uid 101 is the user's subordinate id for 101 on the host), so they are
// written and removed from such a namespace: unpacking layers, removing
// trees the user cannot remove from outside.
func RunMapped(exe, stage string, req, reply any, files ...*os.File) error {
	ch, child, err := NewChannelPair()
	if err != nil {
		return err
	}
	defer ch.Close()
	cmd := exec.Command(exe, "init", stage)
	cmd.ExtraFiles = append([]*os.File{child}, files...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, AmbientCaps: AmbientCaps()}
	p, err := Start(cmd, syscall.SIGKILL)
	child.Close()
	if err != nil {
		return CloneError(err)
	}
	defer func() {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	}()
	maps, err := WriteMaps(p.Pid(), CurrentConfig())
	if err != nil {
		return err
	}
	if maps.Warning != "" {
		fmt.Fprintf(os.Stderr, "rabbitc: warning: %s\n", maps.Warning)
	}
	if err := ch.SendSpec(req); err != nil {
		return err
	}
	if err := ch.WaitSpec(reply); err != nil {
		if errors.Is(err, ErrEOF) {
			<-p.Done()
			return fmt.Errorf("the %s stage ended (%v)", stage, p.Cmd.ProcessState)
		}
		return err
	}
	return nil
}

// RemoveTrees removes paths: as the user where it can, the rest from a
// user namespace with the containers' mappings (`EXE init rmtree`, served
// by ServeRmtree).
func RemoveTrees(exe string, paths ...string) error {
	var left []string
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			left = append(left, p)
		}
	}
	if len(left) == 0 {
		return nil
	}
	return RunMapped(exe, "rmtree", left, &struct{}{})
}

// ServeRmtree is the rmtree stage: it removes the trees it is sent.
func ServeRmtree(ch *Channel) int {
	var paths []string
	if err := ch.WaitSpec(&paths); err != nil {
		return 125
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			ch.SendError("rmtree", err, 0)
			return 125
		}
	}
	if err := ch.SendSpec(struct{}{}); err != nil {
		return 125
	}
	return 0
}
