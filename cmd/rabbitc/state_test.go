package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gcStates removes the state of containers whose rabbitc is gone, and keeps
// the live ones and those being created (state.json missing or not yet
// complete) until they are a minute old.
func TestGCStates(t *testing.T) {
	root := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	write := func(name string, content []byte, age time.Duration) {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if content != nil {
			if err := os.WriteFile(filepath.Join(dir, "state.json"), content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}
	stateOf := func(pid int, start uint64) []byte {
		b, _ := json.Marshal(state{ID: "x", ParentPid: pid, ParentTime: start, Status: "running", AutoRemove: true})
		return b
	}
	write("live", stateOf(os.Getpid(), procStartTime(os.Getpid())), 2*time.Minute)
	write("dead", stateOf(dead.Process.Pid, 12345), 0)
	write("reused-pid", stateOf(os.Getpid(), procStartTime(os.Getpid())+1), 0)
	kept, _ := json.Marshal(state{ID: "y", ParentPid: dead.Process.Pid, ParentTime: 12345, Status: "running", Detached: true})
	write("dead-detached", kept, 0) // exited until rabbitc rm
	write("creating", []byte{}, 0)
	write("creating-no-json", nil, 0)
	write("stale-partial", []byte(`{"id":`), 2*time.Minute)
	write("stale-empty", nil, 2*time.Minute)
	gcStates(root)
	want := map[string]bool{"live": true, "creating": true, "creating-no-json": true, "dead-detached": true}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range ents {
		got[e.Name()] = true
		if !want[e.Name()] {
			t.Errorf("gcStates kept %s", e.Name())
		}
	}
	for name := range want {
		if !got[name] {
			t.Errorf("gcStates removed %s", name)
		}
	}
}

// removeState removes the directory with its state.json, and with anything
// else that ended up in it.
func TestRemoveState(t *testing.T) {
	for _, extra := range []string{"", ".state.json", "unexpected"} {
		dir := filepath.Join(t.TempDir(), "c")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		files := []string{"state.json"}
		if extra != "" {
			files = append(files, extra)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		removeState(dir)
		if _, err := os.Lstat(dir); !os.IsNotExist(err) {
			t.Errorf("with %q in it: the state directory is still there (%v)", extra, err)
		}
		removeState(dir) // again: nothing to do, no panic
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "a": true, "Web-1.x_y": true, "9lives": true,
		"": false, "-web": false, ".web": false, "_web": false, "we b": false, "web/1": false, "wé": false,
		strings.Repeat("a", 128): true, strings.Repeat("a", 129): false} {
		if err := checkName(name); (err == nil) != ok {
			t.Errorf("checkName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}
