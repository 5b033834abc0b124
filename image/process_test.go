package image

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runHelper is the test binary re-executed as a separate process: it pulls
// $_RABBITC_IMAGE_TEST_REF into the store at $_RABBITC_IMAGE_TEST_ROOT and,
// for "mem", prints its peak resident memory.
func runHelper(mode string) int {
	s, err := Open(os.Getenv("_RABBITC_IMAGE_TEST_ROOT"))
	if err == nil {
		_, err = s.Pull(context.Background(), os.Getenv("_RABBITC_IMAGE_TEST_REF"), PullOptions{Keychain: FileKeychain{}})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "mem" {
		fmt.Println(vmHWM())
	}
	return 0
}

// vmHWM is the peak resident set size in kB.
func vmHWM() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return -1
}

func helperCmd(t *testing.T, mode, root, ref string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "_RABBITC_IMAGE_TEST_HELPER="+mode,
		"_RABBITC_IMAGE_TEST_ROOT="+root, "_RABBITC_IMAGE_TEST_REF="+ref)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestKilledPullLeavesNothingTheNextPullTripsOver(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 1<<20, 1)
	ref := reg.push("app:1", img)
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	size, _ := layers[0].Size()

	// The blob stalls after its first 300 KiB until the client goes away.
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, digest.String()) {
			return false
		}
		rec := newBufferedResponse()
		reg.inner.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusOK)
		w.Write(rec.body[:300<<10])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		panic(http.ErrAbortHandler)
	})
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	cmd := helperCmd(t, "pull", root, ref)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partial := s.partialPath(digest)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(partial); err == nil && fi.Size() >= 300<<10 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the helper never wrote its partial blob")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	reg.setFault(nil)
	reg.requests()

	s, err = Open(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Pull(ctxT(t), ref, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, got, img)
	for _, r := range reg.requests() {
		if strings.HasSuffix(r.Path, digest.String()) && r.Range != fmt.Sprintf("bytes=%d-%d", 300<<10, size-1) {
			t.Errorf("the next pull fetched the blob with Range %q, want it to resume at %d", r.Range, 300<<10)
		}
	}
}

// bufferedResponse captures a handler's answer.
type bufferedResponse struct {
	h    http.Header
	code int
	body []byte
}

func newBufferedResponse() *bufferedResponse     { return &bufferedResponse{h: http.Header{}} }
func (b *bufferedResponse) Header() http.Header  { return b.h }
func (b *bufferedResponse) WriteHeader(code int) { b.code = code }
func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.body = append(b.body, p...)
	return len(p), nil
}

func TestPullPeakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("pulls 20 MB")
	}
	reg := newTestRegistry(t)
	img := randomImage(t, 5<<20, 4) // random bytes: ~20 MB compressed
	ref := reg.push("big:1", img)
	out, err := helperCmd(t, "mem", t.TempDir(), ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("helper said %q", out)
	}
	t.Logf("peak RSS of a pull of a 20 MB image: %d KiB", kb)
	if kb > 64<<10 {
		t.Errorf("peak RSS %d KiB, want at most 64 MiB", kb)
	}
}
