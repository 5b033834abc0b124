package tests

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// login checks the credentials with the registry (basic auth here, as
// distribution's registry with an htpasswd file), files them where pull
// reads them first, and logout removes them.
func TestLoginLogout(t *testing.T) {
	requireSetup(t)
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == "alice" && p == "s3cret" {
			reg.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/private/app:1"
	r, _ := name.ParseReference(ref, name.Insecure)
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}

	run := userDir(t, "xdg-run", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + userDir(t, "xdg-data", 0o700), "XDG_RUNTIME_DIR=" + run}}
	wantOneErrorLine(t, runOpt(t, o, "pull", "-q", ref), 125, "denied")
	o.stdin = strings.NewReader("wrong\n")
	wantOneErrorLine(t, runOpt(t, o, "login", "-u", "alice", "--password-stdin", host), 125, "wrong user name or password")
	authFile := filepath.Join(run, "containers", "auth.json")
	if _, err := os.Stat(authFile); err == nil {
		t.Error("a failed login wrote the credentials file")
	}
	o.stdin = nil
	wantOneErrorLine(t, runOpt(t, o, "login", "-u", "alice", host), 125, "--password-stdin")

	o.stdin = strings.NewReader("s3cret\n")
	if res := runOpt(t, o, "login", "-u", "alice", "--password-stdin", host); res.code != 0 || !strings.Contains(res.stdout, "Login Succeeded") {
		t.Fatalf("login: %s", res)
	}
	o.stdin = nil
	if fi, err := os.Stat(authFile); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(env.user.uid) {
		t.Fatalf("credentials file %s: %v (%v): want the user's, mode 0600", authFile, fi, err)
	}
	if res := runOpt(t, o, "pull", "-q", ref); res.code != 0 {
		t.Fatalf("pull after login: %s", res)
	}
	if res := runOpt(t, o, "logout", host); res.code != 0 || !strings.Contains(res.stdout, "Removed login credentials for "+host) {
		t.Fatalf("logout: %s", res)
	}
	wantOneErrorLine(t, runOpt(t, o, "logout", host), 125, "not logged in to "+host)
	wantOneErrorLine(t, runOpt(t, o, "pull", "-q", ref), 125, "denied")
}
