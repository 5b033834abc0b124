package image

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport says where an image comes from, as in containers-transports(5).
type Transport string

const (
	// TransportDocker is a registry speaking the distribution protocol.
	TransportDocker Transport = "docker"
	// TransportOCI is an OCI image layout directory: oci:DIR[:TAG].
	TransportOCI Transport = "oci"
	// TransportOCIArchive is a tar file of an OCI layout: oci-archive:FILE[:TAG].
	TransportOCIArchive Transport = "oci-archive"
	// TransportDockerArchive is what `docker save` writes: docker-archive:FILE[:REF].
	TransportDockerArchive Transport = "docker-archive"
)

// Reference is a parsed image reference.
type Reference struct {
	Transport Transport
	// Docker is the registry reference (TransportDocker only), with docker's
	// defaults applied: nginx is index.docker.io/library/nginx:latest.
	Docker name.Reference
	// Path is the absolute path of the layout or archive (other transports).
	Path string
	// Tag picks one image from a layout (its org.opencontainers.image.ref.name)
	// or a docker archive (one of its RepoTags); empty when there is one.
	Tag string
}

// ParseReference parses a docker reference (nginx, nginx:1.25,
// registry.example:5000/team/app@sha256:...; a docker:// prefix is allowed)
// or a transport reference (oci:DIR[:TAG], oci-archive:FILE[:TAG],
// docker-archive:FILE[:REF]).
func ParseReference(s string) (Reference, error) {
	for _, t := range []Transport{TransportOCIArchive, TransportOCI, TransportDockerArchive} {
		rest, ok := strings.CutPrefix(s, string(t)+":")
		if !ok {
			continue
		}
		// As containers/image does, the path ends at the first colon:
		// a tag may contain colons (docker-archive:x.tar:nginx:1.25), a path
		// rarely does.
		path, tag, _ := strings.Cut(rest, ":")
		if path == "" {
			return Reference{}, fmt.Errorf("parse reference %q: no path after %s: (use %s:PATH[:TAG])", s, t, t)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return Reference{}, fmt.Errorf("parse reference %q: %w", s, err)
		}
		return Reference{Transport: t, Path: abs, Tag: tag}, nil
	}
	ref, err := name.ParseReference(strings.TrimPrefix(s, "docker://"))
	if err != nil {
		return Reference{}, fmt.Errorf("parse reference %q: %w", s, err)
	}
	return Reference{Transport: TransportDocker, Docker: ref}, nil
}

// String is the canonical form, which is also the key the store tags the
// image with: docker.io/library/nginx:latest, oci:/abs/dir:tag.
func (r Reference) String() string {
	if r.Transport != TransportDocker {
		s := string(r.Transport) + ":" + r.Path
		if r.Tag != "" {
			s += ":" + r.Tag
		}
		return s
	}
	return familiarName(r.Docker)
}

// familiarName writes docker.io for Docker Hub, as docker and podman print it
// (ggcr rewrites it to index.docker.io, the registry's API host).
func familiarName(ref name.Reference) string {
	repo := ref.Context()
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	return reg + "/" + repo.RepositoryStr() + sep + ref.Identifier()
}
