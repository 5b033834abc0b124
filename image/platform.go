package image

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultPlatform is the running machine's: GOOS/GOARCH, with the variant
// for arm (v6, v7 from the build's GOARM) and arm64 (v8).
func DefaultPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					p.Variant = "v" + strings.SplitN(s.Value, ",", 2)[0]
				}
			}
		}
	}
	return p
}

// platformString is os/arch[/variant].
func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// normVariant makes the variant an index may leave out explicit: arm64
// images are v8 whether or not the index says so.
func normVariant(p v1.Platform) string {
	if p.Architecture == "arm64" && p.Variant == "" {
		return "v8"
	}
	return p.Variant
}

// platformMatches: same OS and architecture, and the same variant unless
// want leaves it open.
func platformMatches(want, have v1.Platform) bool {
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	return want.Variant == "" || normVariant(want) == normVariant(have)
}

// selectPlatform picks the manifest for want from an index. With no match,
// the error lists what the index offers.
func selectPlatform(idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var available []string
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			continue
		}
		if platformMatches(want, *d.Platform) {
			return d, nil
		}
		// Attestation manifests (buildkit) are listed as unknown/unknown.
		if d.Platform.OS != "unknown" {
			available = append(available, platformString(*d.Platform))
		}
	}
	// An index of one image without a platform (some tools write those).
	if len(idx.Manifests) == 1 && idx.Manifests[0].Platform == nil {
		return idx.Manifests[0], nil
	}
	if len(available) == 0 {
		return v1.Descriptor{}, fmt.Errorf("no image for %s: the index lists no platforms", platformString(want))
	}
	return v1.Descriptor{}, fmt.Errorf("no image for %s (available: %s; choose one with --platform)",
		platformString(want), strings.Join(available, ", "))
}
