package unpack

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gzipped(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestDecompress(t *testing.T) {
	plain := mkTar(t, file("a", strings.Repeat("abc", 1000)))
	for _, c := range []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"gzip", gzipped(t, plain), ""},
		{"zstd", zstded(t, plain), ""},
		{"plain", plain, ""},
		{"gzip of two members", append(gzipped(t, plain[:700]), gzipped(t, plain[700:])...), ""},
		{"xz", []byte("\xfd7zXZ\x00rest"), "xz or bzip2"},
		{"bzip2", []byte("BZh91AY&SY"), "xz or bzip2"},
		{"gzip header cut", []byte{0x1f, 0x8b, 8}, "gzip layer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(c.in))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("got %d bytes (%v), want the %d of the tar", len(got), err, len(plain))
			}
		})
	}
}

// benchLayer is a generated ~40 MiB tar (~20 MiB gzipped): 300 files of
// 128 KiB, half text-like, half random, in 30 directories.
func benchLayer(b *testing.B) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over a lazy dog while rabbitc unpacks layers of images")
	ents := []ent{}
	for i := range 300 {
		buf := make([]byte, 0, 128<<10)
		if i%2 == 0 {
			for len(buf) < 128<<10 {
				buf = append(buf, words[rng.IntN(len(words))]...)
				buf = append(buf, ' ')
			}
			buf = buf[:128<<10]
		} else {
			buf = buf[:128<<10]
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
		}
		ents = append(ents, file(fmt.Sprintf("d%d/f%d", i%30, i), string(buf)))
	}
	return mkTar(b, ents...)
}

// stdDecompress is compress/gzip in place of klauspost's, for the comparison.
func stdDecompress(r io.Reader) (io.ReadCloser, error) { return stdgzip.NewReader(r) }

// BenchmarkLayerGzip unpacks the generated layer from gzip with each
// decoder; BenchmarkGunzip isolates the decoders.
func BenchmarkLayerGzip(b *testing.B) {
	if mode == "plain" {
		b.Skip("needs root or a user namespace")
	}
	tarball := benchLayer(b)
	gz := gzipped(b, tarball)
	b.Logf("layer: %d bytes, %d gzipped, %d zstd", len(tarball), len(gz), len(zstded(b, tarball)))
	for _, c := range []struct {
		name string
		blob []byte
		dec  func(io.Reader) (io.ReadCloser, error)
	}{
		{"klauspost-gzip", gz, Decompress},
		{"std-gzip", gz, stdDecompress},
		{"klauspost-zstd", zstded(b, tarball), Decompress},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.blob)))
			base := b.TempDir()
			for i := 0; b.Loop(); i++ {
				dir := filepath.Join(base, fmt.Sprint(i))
				os.Mkdir(dir, 0o755)
				rc, err := c.dec(bytes.NewReader(c.blob))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Layer(dir, rc, Options{}); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

func BenchmarkGunzip(b *testing.B) {
	gz := gzipped(b, benchLayer(b))
	for _, c := range []struct {
		name string
		dec  func(io.Reader) (io.ReadCloser, error)
	}{{"klauspost", Decompress}, {"std", stdDecompress}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(gz)))
			for b.Loop() {
				rc, err := c.dec(bytes.NewReader(gz))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, rc)
				rc.Close()
			}
		})
	}
}
