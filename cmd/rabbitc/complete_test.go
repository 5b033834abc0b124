package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The dynamic completions: containers from the state directories (running
// ones only for stop, kill, wait and exec), images from tags.json, and an
// image command's answer as rabbitc-image's tree gives it.
func TestCompleteContainers(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	root := filepath.Join(xdg, "rabbitc")
	write := func(st state) {
		dir := filepath.Join(root, st.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(st)
		if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	me, start := os.Getpid(), procStartTime(os.Getpid())
	web := strings.Repeat("a", 64)
	old := strings.Repeat("b", 64)
	anon := strings.Repeat("c", 64)
	write(state{ID: web, Name: "web", ParentPid: me, ParentTime: start, Status: statusRunning, Detached: true, Args: []string{"/bin/server"}})
	write(state{ID: old, Name: "old", ParentPid: me, ParentTime: start + 1, Status: statusExited, ExitCode: 3, Detached: true})
	write(state{ID: anon, ParentPid: me, ParentTime: start, Status: statusRunning, Detached: true})

	names := func(comps []cobra.Completion) []string {
		var out []string
		for _, c := range comps {
			name, _, _ := strings.Cut(c, "\t")
			out = append(out, name)
		}
		slices.Sort(out)
		return out
	}
	cmd := &cobra.Command{}
	comps, dir := completeContainers(true)(cmd, nil, "")
	if got, want := names(comps), []string{web[:12], anon[:12], "web"}; !slices.Equal(got, want) {
		t.Errorf("running: got %q, want %q", got, want)
	}
	if dir != cobra.ShellCompDirectiveNoFileComp {
		t.Errorf("directive %v, want no file completion", dir)
	}
	if !slices.Contains(comps, "web\trunning /bin/server") {
		t.Errorf("no description for web in %q", comps)
	}
	comps, _ = completeContainers(false)(cmd, []string{"web"}, "")
	if got, want := names(comps), []string{web[:12], old[:12], anon[:12], "old"}; !slices.Equal(got, want) {
		t.Errorf("all but web: got %q, want %q", got, want)
	}
	comps, _ = completeContainers(false)(cmd, nil, "o")
	if got, want := names(comps), []string{"old"}; !slices.Equal(got, want) {
		t.Errorf("prefix o: got %q, want %q", got, want)
	}
	comps, _ = completeFirst(completeContainers(true))(cmd, []string{"web"}, "")
	if len(comps) != 0 {
		t.Errorf("exec's command was completed as a container: %q", comps)
	}
}

func TestCompleteRunImages(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	if err := os.MkdirAll(filepath.Join(data, "rabbitc"), 0o700); err != nil {
		t.Fatal(err)
	}
	tags := `{"tags":{"docker.io/library/busybox:latest":{"digest":"sha256:1"},"localhost:5000/app:1":{"digest":"sha256:2"}}}`
	if err := os.WriteFile(filepath.Join(data, "rabbitc", "tags.json"), []byte(tags), 0o600); err != nil {
		t.Fatal(err)
	}
	run := newRunCommand()
	comps, _ := completeRunArgs(run, nil, "")
	if want := []string{"docker.io/library/busybox:latest", "localhost:5000/app:1"}; !slices.Equal(comps, want) {
		t.Errorf("got %q, want %q", comps, want)
	}
	comps, _ = completeRunArgs(run, nil, "loc")
	if want := []string{"localhost:5000/app:1"}; !slices.Equal(comps, want) {
		t.Errorf("prefix loc: got %q, want %q", comps, want)
	}
	if comps, _ := completeRunArgs(run, []string{"busybox"}, ""); len(comps) != 0 {
		t.Errorf("the image's command was completed as an image: %q", comps)
	}
	if err := run.Flags().Set("rootfs", "/x"); err != nil {
		t.Fatal(err)
	}
	if comps, _ := completeRunArgs(run, nil, ""); len(comps) != 0 {
		t.Errorf("run --rootfs: the command was completed as an image: %q", comps)
	}
}

func TestParseCompletions(t *testing.T) {
	comps, dir := parseCompletions([]byte("docker.io/library/busybox:latest\n--tls-verify\trequire HTTPS\n:4\n"))
	if want := []string{"docker.io/library/busybox:latest", "--tls-verify\trequire HTTPS"}; !slices.Equal(comps, want) {
		t.Errorf("got %q, want %q", comps, want)
	}
	if dir != cobra.ShellCompDirectiveNoFileComp {
		t.Errorf("directive %v, want 4", dir)
	}
	if _, dir := parseCompletions([]byte(":16\n")); dir != cobra.ShellCompDirectiveFilterDirs {
		t.Errorf("directive %v, want 16", dir)
	}
}
