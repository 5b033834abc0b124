package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/userns"
)

// Images live in rabbitc-image, a binary of its own beside rabbitc (see its
// package comment: its libraries would cost every start of this binary
// ~3.5 ms of package initialisation). rabbitc execs it for pull, images,
// rmi and image, and asks it to resolve the image of `run IMAGE`.

// imageTool is rabbitc-image's path: beside this binary, else in $PATH.
func imageTool() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "rabbitc-image")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("rabbitc-image"); err == nil {
		return p, nil
	}
	return "", errors.New("rabbitc-image not found beside rabbitc nor in $PATH (images need it: make build builds both, make install installs both)")
}

// imageCommands are the image commands, run by rabbitc-image.
var imageCommands = []string{"pull", "images", "rmi", "image", "system", "login", "logout"}

// newImageForwarders are cobra commands that exec rabbitc-image with the
// same arguments (so `rabbitc --help` lists them).
func newImageForwarders() []*cobra.Command {
	var cmds []*cobra.Command
	for _, name := range imageCommands {
		cmds = append(cmds, &cobra.Command{
			Use: name,
			Short: map[string]string{"pull": "Pull an image", "images": "List images", "rmi": "Remove images",
				"image": "Manage images (ls, pull, rm, prune, inspect)", "system": "system reset: remove the whole image store",
				"login": "Log in to a registry", "logout": "Log out of a registry"}[name],
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				return execImageTool(append([]string{cmd.Name()}, args...))
			},
		})
	}
	return cmds
}

// execImageTool replaces rabbitc with rabbitc-image ARGS. rmi and image rm
// learn which images containers use (--in-use).
func execImageTool(args []string) error {
	tool, err := imageTool()
	if err != nil {
		return err
	}
	if args[0] == "rmi" || len(args) > 1 && (args[0] == "image" && (args[1] == "rm" || args[1] == "rmi") || args[0] == "system") {
		if sts, err := listStates(); err == nil {
			var extra []string
			for _, st := range sts {
				if st.Image != "" {
					extra = append(extra, "--in-use", st.Image+"="+refOf(st))
				}
			}
			n := 1
			if args[0] != "rmi" {
				n = 2
			}
			args = append(append(append([]string(nil), args[:n]...), extra...), args[n:]...)
		}
	}
	return syscall.Exec(tool, append([]string{"rabbitc-image"}, args...), os.Environ())
}

// resolvedImage is rabbitc-image resolve's answer.
type resolvedImage struct {
	Ref    string      `json:"ref"`
	Digest string      `json:"digest"`
	Store  string      `json:"store"`
	Lower  []string    `json:"lower"`
	Config imageConfig `json:"config"`
}

// resolveImage has rabbitc-image pull the image as --pull says (progress on
// stderr) and unpack its layers, and returns them and its config.
func resolveImage(o *runOptions, quiet bool) (*resolvedImage, error) {
	if r, ok := resolveCached(o); ok {
		return r, nil
	}
	tool, err := imageTool()
	if err != nil {
		return nil, err
	}
	args := []string{"resolve"}
	if o.pull != "" {
		args = append(args, "--pull", o.pull)
	}
	if o.platform != "" {
		args = append(args, "--platform", o.platform)
	}
	if quiet || o.quiet {
		args = append(args, "-q")
	}
	cmd := exec.Command(tool, append(args, "--", o.image)...)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if quiet {
		cmd.Stderr = &errOut
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(errOut.String()), "rabbitc: "))
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg == "" && !quiet {
			return nil, &exitError{ee.ExitCode()} // rabbitc-image said why
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, errors.New(msg)
	}
	r := &resolvedImage{}
	if err := json.Unmarshal(out.Bytes(), r); err != nil {
		return nil, fmt.Errorf("rabbitc-image resolve %s: %w", o.image, err)
	}
	return r, nil
}

// containerDir is a container's writable directory in the image store.
func containerDir(store, id string) string {
	return filepath.Join(store, "containers", id)
}

// makeContainerDir makes the overlay's upper, work and mount point
// directories, the user's own (root in the container), or with the vfs
// storage driver the one for the copy.
func makeContainerDir(dir string, vfs bool) error {
	dirs := []string{"upper", "work", "merged"}
	if vfs {
		dirs = []string{"rootfs"}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return fmt.Errorf("create the container's directory %s: %w", dir, err)
		}
	}
	// Its rabbitc, which lives as long as the container: once it is gone
	// and the container has no state, the directory is garbage.
	me := fmt.Sprintf("%d %d", os.Getpid(), procStartTime(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, creatorFile), []byte(me), 0o600); err != nil {
		return fmt.Errorf("create the container's directory %s: %w", dir, err)
	}
	return os.Chmod(filepath.Join(dir, dirs[0]), 0o755)
}

// removeContainerDir removes a container's writes, from a user namespace
// with the containers' mappings for files of other ids.
func removeContainerDir(dir string) {
	if dir == "" {
		return
	}
	// overlayfs leaves work/work at mode 0: the user's own, so opened up
	// here, and the usual container (which wrote nothing of other ids)
	// goes without the user namespace stage (a Go program's start).
	os.Chmod(filepath.Join(dir, "work", "work"), 0o700)
	if err := userns.RemoveTrees("/proc/self/exe", dir); err != nil {
		fmt.Fprintf(os.Stderr, "rabbitc: warning: remove the container's directory %s: %v\n", dir, err)
	}
}

// gcContainerDirs removes the writable directories of containers that
// have no state left and whose rabbitc is gone (killed before it could
// remove them); a directory without a creator file yet is left alone for a
// minute (one being made this instant).
func gcContainerDirs(stateRoot string) {
	root, err := imageStoreRoot()
	if err != nil {
		return
	}
	ents, err := os.ReadDir(filepath.Join(root, "containers"))
	if err != nil {
		return
	}
	for _, e := range ents {
		dir := filepath.Join(root, "containers", e.Name())
		if fileExists(filepath.Join(stateRoot, e.Name())) {
			continue
		}
		var pid int
		var start uint64
		if b, err := os.ReadFile(filepath.Join(dir, creatorFile)); err == nil {
			if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err == nil && procAlive(pid, start) {
				continue
			}
		} else if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < time.Minute {
			continue
		}
		removeContainerDir(dir)
	}
}

// imageStoreRoot is rabbitc-image's store: $XDG_DATA_HOME/rabbitc or
// ~/.local/share/rabbitc.
func imageStoreRoot() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "rabbitc"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "share", "rabbitc"), nil
}

// resolveCached answers resolveImage from the store alone, without
// starting rabbitc-image, for an image the store has whole (its tag, its
// config and every unpacked layer) and a --pull that allows it: a run of a
// cached image then costs no second Go program. It reads the store's own
// files (package image's layout: tags.json, images/sha256/HEX/config.json,
// layers/sha256/HEX); anything it does not recognise goes to rabbitc-image.
func resolveCached(o *runOptions) (*resolvedImage, bool) {
	if o.pull == "always" || o.platform != "" {
		return nil, false
	}
	key, ok := familiarRef(o.image)
	if !ok {
		return nil, false
	}
	root, err := imageStoreRoot()
	if err != nil {
		return nil, false
	}
	var tags struct {
		Tags map[string]struct {
			Digest string `json:"digest"`
		} `json:"tags"`
	}
	if b, err := os.ReadFile(filepath.Join(root, "tags.json")); err != nil || json.Unmarshal(b, &tags) != nil {
		return nil, false
	}
	digest := tags.Tags[key].Digest
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || strings.ContainsAny(hex, "/.") {
		return nil, false
	}
	var cfg struct {
		Config struct {
			Entrypoint, Cmd, Env []string
			WorkingDir, User     string
			StopSignal           string
			ExposedPorts         map[string]struct{}
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	b, err := os.ReadFile(filepath.Join(root, "images", "sha256", hex, "config.json"))
	if err != nil || json.Unmarshal(b, &cfg) != nil || len(cfg.RootFS.DiffIDs) == 0 {
		return nil, false
	}
	r := &resolvedImage{Ref: o.image, Digest: digest, Store: root}
	for i := len(cfg.RootFS.DiffIDs) - 1; i >= 0; i-- {
		h, ok := strings.CutPrefix(cfg.RootFS.DiffIDs[i], "sha256:")
		dir := filepath.Join(root, "layers", "sha256", h)
		if !ok || strings.ContainsAny(h, "/.") || !dirExists(dir) {
			return nil, false
		}
		r.Lower = append(r.Lower, dir)
	}
	c := cfg.Config
	r.Config = imageConfig{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, StopSignal: c.StopSignal}
	for p := range c.ExposedPorts {
		r.Config.ExposedPorts = append(r.Config.ExposedPorts, p)
	}
	sort.Strings(r.Config.ExposedPorts)
	return r, true
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// familiarRef is a docker reference as the store keys it ("nginx" ->
// docker.io/library/nginx:latest, "reg:5000/app" -> reg:5000/app:latest);
// false for what it is not sure of (digests, transports, odd names), which
// rabbitc-image then parses.
func familiarRef(ref string) (string, bool) {
	if ref == "" || strings.ContainsAny(ref, "@ \t") || strings.Contains(ref, "://") {
		return "", false
	}
	for _, t := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if strings.HasPrefix(ref, t) {
			return "", false
		}
	}
	name, tag := ref, "latest"
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		name, tag = ref[:i], ref[i+1:]
	}
	if tag == "" || name == "" || name != strings.ToLower(name) && !strings.Contains(name, "/") {
		return "", false
	}
	first, rest, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case first == "localhost" || strings.ContainsAny(first, ".:"):
		if first == "index.docker.io" {
			name = "docker.io/" + rest
		}
	default:
		name = "docker.io/" + name
	}
	if strings.HasPrefix(name, "docker.io/") && !strings.Contains(strings.TrimPrefix(name, "docker.io/"), "/") {
		name = "docker.io/library/" + strings.TrimPrefix(name, "docker.io/")
	}
	return name + ":" + tag, true
}
