package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// basicAuth makes reg ask for user:secret with HTTP basic auth, as
// distribution's registry does with an htpasswd file.
func basicAuth(reg *testRegistry) {
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if user, pass, ok := r.BasicAuth(); ok && user == "user" && pass == "secret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	})
}

func TestLogin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*testRegistry)
	}{{"token", func(r *testRegistry) { tokenServer(t, r) }}, {"basic", basicAuth}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			img := randomImage(t, 1024, 1)
			ref := reg.push("private/app:1", img)
			tc.setup(reg)
			r, err := ParseRegistry(reg.host, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := Login(ctxT(t), r, "user", "wrong", false); err == nil || !strings.Contains(err.Error(), "wrong user name or password") {
				t.Fatalf("login with a wrong password: %v, want it refused", err)
			}
			if err := Login(ctxT(t), r, "user", "secret", false); err != nil {
				t.Fatalf("login: %v", err)
			}

			run := t.TempDir()
			t.Setenv("XDG_RUNTIME_DIR", run)
			t.Setenv("HOME", t.TempDir())
			t.Setenv("DOCKER_CONFIG", "")
			t.Setenv("XDG_CONFIG_HOME", "")
			file, err := LoginFile()
			if err != nil || file != filepath.Join(run, "containers", "auth.json") {
				t.Fatalf("LoginFile() = %q, %v", file, err)
			}
			// Another tool's entry and fields survive.
			writeAuth(t, file, "other.example", "a:b")
			if err := SaveCredentials(file, r, "user", "secret"); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("auth file: %v, %v; want mode 0600", fi.Mode(), err)
			}
			s := newStore(t)
			if _, err := s.Pull(ctxT(t), ref, PullOptions{}); err != nil {
				t.Fatalf("pull with the stored credentials: %v", err)
			}
			if err := RemoveCredentials(file, r, false); err != nil {
				t.Fatal(err)
			}
			if err := RemoveCredentials(file, r, false); !errors.Is(err, ErrNotLoggedIn) {
				t.Fatalf("second logout: %v, want ErrNotLoggedIn", err)
			}
			var kept struct{ Auths map[string]any }
			b, _ := os.ReadFile(file)
			if json.Unmarshal(b, &kept) != nil || kept.Auths["other.example"] == nil || len(kept.Auths) != 1 {
				t.Fatalf("auth file after logout: %s; want only the other entry", b)
			}
			if _, err := newStore(t).Pull(ctxT(t), ref, PullOptions{}); err == nil {
				t.Fatal("pull after logout succeeded: the credentials stayed")
			}
		})
	}
}

func TestDockerHubKey(t *testing.T) {
	for _, s := range []string{"docker.io", "index.docker.io"} {
		r, err := ParseRegistry(s, false)
		if err != nil || authKey(r) != "docker.io" {
			t.Errorf("%s: key %q, %v; want docker.io", s, authKey(r), err)
		}
	}
	if _, err := ParseRegistry("not a registry/x", false); err == nil {
		t.Error("a name with a space and a path is accepted as a registry")
	}
}
