package image

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Refs reads tags.json alone: the references, sorted; none (and no
// directory made) for a store that does not exist.
func TestRefs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	refs, err := Refs(root)
	if err != nil || len(refs) != 0 {
		t.Fatalf("Refs of a missing store: %q, %v", refs, err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("Refs made the store: %v", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	h := "sha256:" + strings.Repeat("a", 64)
	tags := `{"tags":{"localhost:5000/app:1":{"digest":"` + h + `"},"docker.io/library/busybox:latest":{"digest":"` + h + `"}}}`
	if err := os.WriteFile(filepath.Join(root, "tags.json"), []byte(tags), 0o600); err != nil {
		t.Fatal(err)
	}
	refs, err = Refs(root)
	if want := []string{"docker.io/library/busybox:latest", "localhost:5000/app:1"}; err != nil || !slices.Equal(refs, want) {
		t.Errorf("Refs: %q, %v; want %q", refs, err, want)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Errorf("Refs changed the store: %d entries", len(ents))
	}
}
