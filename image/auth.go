package image

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// AuthFiles are the credential files read, in this order, as podman and
// docker read them: the first file with an entry for the registry wins.
func AuthFiles() []string {
	var files []string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		files = append(files, filepath.Join(d, "containers", "auth.json"))
	}
	home, _ := os.UserHomeDir()
	config := os.Getenv("XDG_CONFIG_HOME")
	if config == "" && home != "" {
		config = filepath.Join(home, ".config")
	}
	if config != "" {
		files = append(files, filepath.Join(config, "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		files = append(files, filepath.Join(d, "config.json"))
	} else if home != "" {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// FileKeychain resolves credentials from auth.json / config.json files.
// Credential helpers (credsStore, credHelpers) are not run.
type FileKeychain struct{ Files []string }

// DefaultKeychain reads AuthFiles.
func DefaultKeychain() FileKeychain { return FileKeychain{Files: AuthFiles()} }

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// Resolve implements authn.Keychain.
func (k FileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	keys := authKeys(target)
	for _, file := range k.Files {
		b, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read credentials %s: %w", file, err)
		}
		var cfg struct {
			Auths map[string]authEntry `json:"auths"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("read credentials %s: %w (fix or remove the file)", file, err)
		}
		entries := normaliseAuthKeys(cfg.Auths)
		for _, key := range keys {
			if e, ok := entries[key]; ok {
				return e.authenticator(file, key)
			}
		}
	}
	return authn.Anonymous, nil
}

// authKeys lists the keys an entry for target may be filed under, the most
// specific first: containers' auth.json allows registry/namespace/repo keys.
func authKeys(target authn.Resource) []string {
	reg := target.RegistryStr()
	var keys []string
	if repo, ok := target.(name.Repository); ok {
		path := reg + "/" + repo.RepositoryStr()
		for p := path; p != reg; p = p[:strings.LastIndexByte(p, '/')] {
			keys = append(keys, p)
		}
	}
	keys = append(keys, reg)
	if reg == name.DefaultRegistry {
		keys = append(keys, "docker.io", "registry-1.docker.io")
	}
	return keys
}

// normaliseAuthKeys turns docker's URL keys (https://index.docker.io/v1/)
// into bare hosts, keeping bare keys first when both exist.
func normaliseAuthKeys(auths map[string]authEntry) map[string]authEntry {
	out := make(map[string]authEntry, len(auths))
	for k, v := range auths {
		if !strings.Contains(k, "://") {
			out[k] = v
		}
	}
	for k, v := range auths {
		_, rest, ok := strings.Cut(k, "://")
		if !ok {
			continue
		}
		host, _, _ := strings.Cut(rest, "/")
		if _, dup := out[host]; !dup {
			out[host] = v
		}
	}
	return out
}

func (e authEntry) authenticator(file, key string) (authn.Authenticator, error) {
	cfg := authn.AuthConfig{
		Username:      e.Username,
		Password:      e.Password,
		IdentityToken: e.IdentityToken,
		RegistryToken: e.RegistryToken,
	}
	if e.Auth != "" {
		dec, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return nil, fmt.Errorf("read credentials %s: entry %s: auth is not base64: %w", file, key, err)
		}
		user, pass, ok := strings.Cut(string(dec), ":")
		if !ok {
			return nil, fmt.Errorf("read credentials %s: entry %s: auth is not user:password", file, key)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return authn.FromConfig(cfg), nil
}
