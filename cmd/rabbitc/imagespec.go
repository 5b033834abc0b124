package main

import (
	"errors"
	"fmt"
)

// imageConfig is what `run IMAGE` takes from an image's config, as docker
// does (the OCI image spec's config: Entrypoint, Cmd, Env, WorkingDir,
// User, StopSignal, ExposedPorts).
type imageConfig struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	User         string
	StopSignal   string
	ExposedPorts []string // "80/tcp"
}

// imageArgs is the payload's argv, as docker makes it: the image's
// Entrypoint followed by the arguments after the image, or the image's Cmd
// when there are none. --entrypoint replaces the Entrypoint and drops the
// image's Cmd ("" clears the Entrypoint); rabbitc's --cmd PROG replaces
// both, PROG with the arguments after the image, as with --rootfs.
func imageArgs(ic imageConfig, o *runOptions, entrypointSet bool, args []string) ([]string, error) {
	if o.cmd != "" {
		return append([]string{o.cmd}, args...), nil
	}
	ep, cmd := ic.Entrypoint, ic.Cmd
	if entrypointSet {
		ep, cmd = nil, nil
		if o.entrypoint != "" {
			ep = []string{o.entrypoint}
		}
	}
	if len(args) > 0 {
		cmd = args
	}
	argv := append(append([]string(nil), ep...), cmd...)
	if len(argv) == 0 {
		return nil, errors.New("the image has no command (no Entrypoint or Cmd): give one after the image, or --entrypoint")
	}
	return argv, nil
}

// imageEnv is the image's Env under the defaults: PATH from the image when
// it sets one, then -e and --env-file, which win.
func imageEnv(ic imageConfig, env []string) ([]string, error) {
	for _, e := range ic.Env {
		k, v, ok := splitEnv(e)
		if !ok {
			return nil, fmt.Errorf("the image's Env %q: expected KEY=VALUE", e)
		}
		env = setEnv(env, k, v)
	}
	return env, nil
}

func splitEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], i > 0
		}
	}
	return "", "", false
}
