package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// LoginFile is where login stores credentials, as podman does:
// $XDG_RUNTIME_DIR/containers/auth.json (gone at logout of the session), or
// ~/.config/containers/auth.json without a runtime directory. Both are the
// first files AuthFiles reads.
func LoginFile() (string, error) {
	files := AuthFiles()
	if len(files) == 0 || filepath.Base(files[0]) != "auth.json" {
		return "", errors.New("no place for credentials: set XDG_RUNTIME_DIR or HOME")
	}
	return files[0], nil
}

// ParseRegistry is a registry named as login takes it: a host[:port], with
// docker.io (and index.docker.io) meaning Docker Hub. insecure allows plain
// HTTP to a registry that is not on a loopback address.
func ParseRegistry(s string, insecure bool) (name.Registry, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(s, append(opts, name.StrictValidation)...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("%q is not a registry name (host or host:port): %w", s, err)
	}
	return reg, nil
}

// authKey is the key a registry's credentials are filed under.
func authKey(reg name.Registry) string {
	if reg.RegistryStr() == name.DefaultRegistry {
		return "docker.io"
	}
	return reg.RegistryStr()
}

// Login checks user and password with the registry, through its token
// exchange when it asks for one and then its /v2/ endpoint, which answers
// 200 only to valid credentials; it stores nothing.
func Login(ctx context.Context, reg name.Registry, user, password string, insecure bool) error {
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	base := &plainHTTPGuard{inner: baseTransport(insecure), insecure: insecure}
	rt, err := transport.NewWithContext(ctx, reg, auth, base, nil)
	if err != nil {
		return explainLogin(reg, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return explainLogin(reg, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return explainLogin(reg, transport.CheckError(resp, http.StatusOK))
}

func explainLogin(reg name.Registry, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("log in to %s: wrong user name or password (%d)", reg.RegistryStr(), te.StatusCode)
	}
	return explainRegistryError(reg.Repo("library/x").Tag("latest"), err)
}

// authFile is an auth.json, kept whole: entries and fields rabbitc does not
// know about (credsStore, credHelpers, other tools' keys) survive a login.
type authFile struct {
	path  string
	top   map[string]json.RawMessage
	auths map[string]json.RawMessage
}

func readAuthFile(path string) (*authFile, error) {
	f := &authFile{path: path, top: map[string]json.RawMessage{}, auths: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return f, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &f.top)
	}
	if err == nil && f.top["auths"] != nil {
		err = json.Unmarshal(f.top["auths"], &f.auths)
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials %s: %w (fix or remove the file)", path, err)
	}
	return f, nil
}

// write replaces the file by rename, mode 0600 in a 0700 directory, so
// that no reader sees half of it.
func (f *authFile) write() error {
	b, err := json.Marshal(f.auths)
	if err != nil {
		return err
	}
	f.top["auths"] = b
	out, err := json.MarshalIndent(f.top, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return fmt.Errorf("store credentials: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".auth.json-*")
	if err != nil {
		return fmt.Errorf("store credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(append(out, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		return fmt.Errorf("store credentials in %s: %w", f.path, err)
	}
	return nil
}

// SaveCredentials files user and password for reg in the auth.json at path.
func SaveCredentials(path string, reg name.Registry, user, password string) error {
	f, err := readAuthFile(path)
	if err != nil {
		return err
	}
	entry, _ := json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))})
	f.auths[authKey(reg)] = entry
	return f.write()
}

// NoRegistry is RemoveCredentials' registry with all set.
var NoRegistry name.Registry

// ErrNotLoggedIn is RemoveCredentials' answer for a registry with no entry.
var ErrNotLoggedIn = errors.New("not logged in")

// RemoveCredentials removes reg's entry (all entries when all is set) from
// the auth.json at path.
func RemoveCredentials(path string, reg name.Registry, all bool) error {
	f, err := readAuthFile(path)
	if err != nil {
		return err
	}
	switch {
	case all:
		f.auths = map[string]json.RawMessage{}
	case f.auths[authKey(reg)] == nil:
		return ErrNotLoggedIn
	default:
		delete(f.auths, authKey(reg))
	}
	return f.write()
}
