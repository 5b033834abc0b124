package main

import (
	"io"
	"os"
)

// containerLog is a detached container's log. Placeholder until the log
// format of package ctrlog is wired in: both streams go to one file.
type containerLog struct{ f *os.File }

func openLog(path string) (*containerLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &containerLog{f}, nil
}

func (l *containerLog) stream(name string) io.Writer { return l.f }
