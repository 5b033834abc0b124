package main

import (
	"reflect"
	"testing"
)

func TestImageArgs(t *testing.T) {
	ic := imageConfig{Entrypoint: []string{"/docker-entrypoint.sh"}, Cmd: []string{"nginx", "-g", "daemon off;"}}
	for _, tc := range []struct {
		name  string
		ic    imageConfig
		o     runOptions
		epSet bool
		args  []string
		want  []string
	}{
		{"image's", ic, runOptions{}, false, nil, []string{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}},
		{"args replace Cmd", ic, runOptions{}, false, []string{"sh"}, []string{"/docker-entrypoint.sh", "sh"}},
		{"--entrypoint drops Cmd", ic, runOptions{entrypoint: "/bin/sh"}, true, nil, []string{"/bin/sh"}},
		{"--entrypoint with args", ic, runOptions{entrypoint: "/bin/sh"}, true, []string{"-c", "echo"}, []string{"/bin/sh", "-c", "echo"}},
		{"--entrypoint '' clears", ic, runOptions{}, true, []string{"ls"}, []string{"ls"}},
		{"--cmd wins", ic, runOptions{cmd: "/bin/server"}, false, []string{"-v"}, []string{"/bin/server", "-v"}},
		{"Cmd only", imageConfig{Cmd: []string{"sh"}}, runOptions{}, false, nil, []string{"sh"}},
	} {
		o := tc.o
		got, err := imageArgs(tc.ic, &o, tc.epSet, tc.args)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: imageArgs = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	o := runOptions{}
	if _, err := imageArgs(imageConfig{}, &o, false, nil); err == nil {
		t.Error("an image without a command was accepted")
	}
}

func TestImageEnv(t *testing.T) {
	got, err := imageEnv(imageConfig{Env: []string{"PATH=/opt/bin:/bin", "NGINX_VERSION=1.25", "EMPTY="}}, []string{"PATH=/usr/bin", "HOSTNAME=h"})
	want := []string{"PATH=/opt/bin:/bin", "HOSTNAME=h", "NGINX_VERSION=1.25", "EMPTY="}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("imageEnv = %q, %v; want %q", got, err, want)
	}
	if _, err := imageEnv(imageConfig{Env: []string{"=x"}}, nil); err == nil {
		t.Error("a bad Env entry was accepted")
	}
}
