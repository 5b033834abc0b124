package main

import (
	"testing"

	"github.com/rabbitc/rabbitc/image"
)

// TestFamiliarRef: the store's key for a reference, as package image
// makes it (which this binary does not link: see imagecmd.go), or false.
func TestFamiliarRef(t *testing.T) {
	for _, ref := range []string{
		"nginx", "nginx:1.25", "team/app", "team/app:v2", "registry.example:5000/team/app:1",
		"127.0.0.1:5000/test/busybox:1", "localhost/app", "localhost:5000/app:x", "docker.io/nginx",
		"docker.io/library/nginx:latest", "index.docker.io/library/nginx", "quay.io/org/img:tag",
	} {
		got, ok := familiarRef(ref)
		r, err := image.ParseReference(ref)
		if err != nil {
			t.Fatalf("image.ParseReference(%q): %v", ref, err)
		}
		if !ok || got != r.String() {
			t.Errorf("familiarRef(%q) = %q, %v; the store's key is %q", ref, got, ok, r.String())
		}
	}
	for _, ref := range []string{"", "nginx@sha256:" + "ab", "oci:/dir", "oci-archive:x.tar", "docker-archive:x.tar:nginx:1", "docker://nginx", "a b"} {
		if got, ok := familiarRef(ref); ok {
			t.Errorf("familiarRef(%q) = %q: want it left to rabbitc-image", ref, got)
		}
	}
}
