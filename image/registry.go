package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// registryClient talks to one repository with one authenticated transport:
// the registry is pinged and a token fetched once per pull, and the same
// transport carries manifest requests (through ggcr's remote) and blob
// requests (ours, which need Range).
type registryClient struct {
	ref  name.Reference
	rt   http.RoundTripper
	http *http.Client
}

// retryBackoff is for requests that fail before a body arrives (429, 5xx,
// a reset connection). Broken bodies are resumed by putBlob instead.
var retryBackoff = transport.Backoff{Duration: 200 * time.Millisecond, Factor: 3, Jitter: 0.1, Steps: 4}

// blobIdleTimeout ends a blob transfer that receives nothing for this long,
// so a stalled connection becomes a resumable error rather than a hang.
var blobIdleTimeout = 60 * time.Second

func newRegistryClient(ctx context.Context, ref name.Reference, opts PullOptions) (*registryClient, error) {
	if opts.Insecure {
		// name.Insecure lets ggcr fall back to http after https fails.
		r, err := name.ParseReference(ref.String(), name.Insecure)
		if err != nil {
			return nil, err
		}
		ref = r
	}
	retry := transport.NewRetry(&plainHTTPGuard{inner: baseTransport(opts.Insecure), insecure: opts.Insecure},
		transport.WithRetryBackoff(retryBackoff),
		transport.WithRetryPredicate(retryable),
		transport.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))
	kc := opts.Keychain
	if kc == nil {
		kc = DefaultKeychain()
	}
	auth, err := kc.Resolve(ref.Context())
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, ref.Context().Registry, auth, retry, []string{ref.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	return &registryClient{ref: ref, rt: rt, http: &http.Client{Transport: rt}}, nil
}

// baseTransport is the HTTP transport under ggcr's: timeouts, proxies from
// the environment, and TLS verification unless insecure.
func baseTransport(insecure bool) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: insecure},
	}
}

// retryable is for requests that got no response: a reset or dropped
// connection is worth another try, a refused one or a bad name is not.
func retryable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errPlainHTTP) {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return false
	}
	var te *transport.Error // 429 and 5xx answers come as temporary ones
	if errors.As(err, &te) {
		return te.Temporary()
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *registryClient) options(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithTransport(c.rt), remote.WithContext(ctx)}
}

// head asks which digest the reference points at: one HEAD request.
func (c *registryClient) head(ctx context.Context) (*v1.Descriptor, error) {
	return remote.Head(c.ref, c.options(ctx)...)
}

// get fetches a manifest or index (ggcr checks it against a digest reference).
func (c *registryClient) get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	return remote.Get(ref, c.options(ctx)...)
}

func (c *registryClient) blobURL(h v1.Hash) string {
	repo := c.ref.Context()
	// The scheme is rewritten by ggcr's transport to the one the ping found.
	return fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), h)
}

// source is a blob in this repository, fetched with Range when resuming.
func (c *registryClient) source(d v1.Descriptor) blobSource {
	return &registryBlob{c: c, url: c.blobURL(d.Digest), size: d.Size}
}

type registryBlob struct {
	c    *registryClient
	url  string
	size int64
}

func (b *registryBlob) open(parent context.Context, offset int64) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancel(parent)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		cancel()
		return nil, 0, permanentError{err}
	}
	if offset > 0 {
		// A closed range: some registries (ggcr's among them) do not
		// understand an open one.
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, b.size-1))
	}
	resp, err := b.c.http.Do(req)
	if err != nil {
		cancel()
		return nil, 0, err
	}
	start, err := rangeStart(resp, offset)
	if err != nil {
		resp.Body.Close()
		cancel()
		if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return b.open(parent, 0) // our partial file is longer than the blob: start over
		}
		return nil, 0, err
	}
	return newIdleBody(resp.Body, cancel, blobIdleTimeout), start, nil
}

// rangeStart checks the response to a (possibly ranged) blob GET and says
// at which byte its body starts.
func rangeStart(resp *http.Response, offset int64) (int64, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		return 0, nil
	case http.StatusPartialContent:
		// Content-Range: bytes START-END/TOTAL
		cr := strings.TrimPrefix(resp.Header.Get("Content-Range"), "bytes ")
		first, _, _ := strings.Cut(cr, "-")
		start, err := strconv.ParseInt(first, 10, 64)
		if err != nil || start != offset {
			return 0, permanentError{fmt.Errorf("registry answered range %d- with Content-Range %q", offset, resp.Header.Get("Content-Range"))}
		}
		return start, nil
	}
	err := transport.CheckError(resp, http.StatusOK)
	var te *transport.Error
	if errors.As(err, &te) && !te.Temporary() {
		return 0, permanentError{err}
	}
	return 0, err
}

// idleBody cancels its request when no byte arrives for a while.
type idleBody struct {
	io.ReadCloser
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
}

func newIdleBody(rc io.ReadCloser, cancel context.CancelFunc, idle time.Duration) *idleBody {
	return &idleBody{ReadCloser: rc, cancel: cancel, timer: time.AfterFunc(idle, cancel), idle: idle}
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("no data for %s: %w", b.idle, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// fetchSmall reads a small blob (a config) into memory and verifies it.
func (c *registryClient) fetchSmall(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	rc, _, err := c.source(d).open(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(rc, d)
}

var errPlainHTTP = errors.New("plain HTTP is only used for registries on loopback addresses")

// plainHTTPGuard refuses http:// requests except to loopback hosts, as
// docker does. ggcr itself also falls back to http for private-range
// addresses and .local names, which we do not want.
type plainHTTPGuard struct {
	inner    http.RoundTripper
	insecure bool
}

func (g *plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure && !isLoopbackHost(req.URL.Hostname()) {
		return nil, fmt.Errorf("%s: %w (use --tls-verify=false for a registry without TLS)", req.URL.Host, errPlainHTTP)
	}
	return g.inner.RoundTrip(req)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// explainRegistryError turns a failure talking to the registry into one
// line that names the problem and, where there is one, the fix.
func explainRegistryError(ref name.Reference, err error) error {
	host := ref.Context().RegistryStr()
	var te *transport.Error
	var dns *net.DNSError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, errPlainHTTP):
		return err
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connect to %s: connection refused (is the registry running? check the name)", host)
	case errors.As(err, &dns):
		return fmt.Errorf("look up %s: %s (check the registry name and your network)", host, dns.Err)
	case errors.As(err, &certErr):
		return fmt.Errorf("connect to %s: %w (install the registry's CA, or use --tls-verify=false)", host, certErr)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("connect to %s: timed out (check the registry name and your network)", host)
	case errors.As(err, &te):
		return explainStatus(ref, te)
	}
	return err
}

func explainStatus(ref name.Reference, te *transport.Error) error {
	code := transport.ErrorCode("")
	if len(te.Errors) > 0 {
		code = te.Errors[0].Code
	}
	switch {
	case te.StatusCode == http.StatusUnauthorized || code == transport.UnauthorizedErrorCode ||
		te.StatusCode == http.StatusForbidden || code == transport.DeniedErrorCode:
		return fmt.Errorf("access to %s denied (%d): the repository does not exist or needs credentials (check the name; credentials are read from %s)",
			ref.Context(), te.StatusCode, strings.Join(AuthFiles(), ", "))
	case code == transport.ManifestUnknownErrorCode || code == transport.NameUnknownErrorCode || te.StatusCode == http.StatusNotFound:
		return fmt.Errorf("manifest unknown: %s has no %s (check the tag or digest)", ref.Context(), ref.Identifier())
	case te.StatusCode == http.StatusTooManyRequests || code == transport.TooManyRequestsErrorCode:
		return fmt.Errorf("registry %s: too many requests (rate-limited: wait, or log in for a higher limit)", ref.Context().RegistryStr())
	case te.StatusCode >= 500:
		return fmt.Errorf("registry %s: server error %d after retries (try again later)", ref.Context().RegistryStr(), te.StatusCode)
	}
	return te
}

// FileKeychain is what PullOptions.Keychain defaults to.
var _ authn.Keychain = FileKeychain{}
