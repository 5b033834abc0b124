package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rabbitc/rabbitc/image"
)

// The image store is $XDG_DATA_HOME/rabbitc (~/.local/share/rabbitc):
// blobs, images and tags (package image), and one unpacked directory a
// layer, unpacked in a user namespace with the containers' mappings
// (mapped.go). A container of an image gets its copy-on-write directories
// under containers/ID there (imageRoot), removed with the container.

// storeRoot is the image store's directory.
func storeRoot() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "rabbitc"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the image store: %w (set $XDG_DATA_HOME or $HOME)", err)
	}
	return filepath.Join(home, ".local", "share", "rabbitc"), nil
}

func openStore() (*image.Store, error) {
	root, err := storeRoot()
	if err != nil {
		return nil, err
	}
	st, err := image.Open(root)
	if err != nil {
		return nil, err
	}
	// A killed unpack's layer: never used (a temporary name), removed now
	// from the user namespace that owns its files.
	if stale := st.StaleTemps(); len(stale) > 0 {
		if err := removeTrees(stale...); err != nil {
			fmt.Fprintf(os.Stderr, "rabbitc: warning: remove what a killed pull left: %v\n", err)
		}
	}
	return st, nil
}

// pullOptions are the flags of pull and run's --pull.
type pullOptions struct {
	policy    string
	quiet     bool
	platform  string
	tlsVerify bool
}

// ensureImage pulls ref as policy says (missing by default), unpacks the
// layers the store lacks, and returns the image.
func ensureImage(ctx context.Context, st *image.Store, ref string, po pullOptions) (*image.Image, error) {
	policy := image.PullMissing
	if po.policy != "" {
		var err error
		if policy, err = image.ParsePolicy(po.policy); err != nil {
			return nil, err
		}
	}
	opts := image.PullOptions{Policy: policy, Insecure: !po.tlsVerify}
	if po.platform != "" {
		p, err := v1.ParsePlatform(po.platform)
		if err != nil {
			return nil, fmt.Errorf("--platform %q: %w", po.platform, err)
		}
		opts.Platform = p
	}
	var prog *progress
	if !po.quiet {
		prog = newProgress(os.Stderr)
		opts.Progress = prog.update
	}
	im, err := st.Pull(ctx, ref, opts)
	if prog != nil {
		prog.finish()
	}
	if err != nil {
		return nil, err
	}
	return im, unpackMissing(ctx, st, im)
}

// unpackMissing unpacks the image's layers the store has not got, in one
// unpack stage, each under its layer's lock (a concurrent run unpacks it
// once).
func unpackMissing(ctx context.Context, st *image.Store, im *image.Image) error {
	var blobs []*os.File
	var dirs, diffIDs []string
	var unlocks []func()
	defer func() {
		for _, f := range blobs {
			f.Close()
		}
		for _, u := range unlocks {
			u()
		}
	}()
	seen := map[v1.Hash]bool{}
	for _, l := range im.Layers {
		if seen[l.DiffID] || st.HasLayer(l.DiffID) {
			continue
		}
		seen[l.DiffID] = true
		unlock, err := st.LockLayer(ctx, l.DiffID)
		if err != nil {
			return err
		}
		unlocks = append(unlocks, unlock)
		if st.HasLayer(l.DiffID) { // unpacked meanwhile
			continue
		}
		r, err := im.Open(l)
		if err != nil {
			return err
		}
		f, ok := r.(*os.File)
		if !ok {
			r.Close()
			return fmt.Errorf("layer %s: not a file in the store", l.Digest)
		}
		tmp, err := st.TempDir()
		if err != nil {
			f.Close()
			return err
		}
		blobs, dirs, diffIDs = append(blobs, f), append(dirs, tmp), append(diffIDs, l.DiffID.String())
	}
	if len(dirs) == 0 {
		return nil
	}
	notes, err := unpackLayers(blobs, dirs, diffIDs)
	for _, n := range notes {
		fmt.Fprintf(os.Stderr, "rabbitc: note: %s\n", n)
	}
	if err == nil {
		for i, d := range dirs {
			h, _ := v1.NewHash(diffIDs[i])
			if cerr := st.CommitLayer(d, h); cerr != nil && !errors.Is(cerr, fs.ErrExist) {
				err = cerr
				break
			}
		}
	}
	if err != nil {
		removeTrees(dirs...) // nothing half-unpacked is ever used: temp names only
		return err
	}
	return nil
}

// progress shows a pull: on a terminal one line a layer, rewritten in
// place; otherwise a line per finished layer.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	order  []v1.Hash
	layers map[v1.Hash]*image.Progress
	start  map[v1.Hash]time.Time
	drawn  int
	last   time.Time
}

func newProgress(w *os.File) *progress {
	return &progress{w: w, tty: term.IsTerminal(int(w.Fd())), layers: map[v1.Hash]*image.Progress{}, start: map[v1.Hash]time.Time{}}
}

func (p *progress) update(ev image.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.layers[ev.Digest]; !ok {
		p.order = append(p.order, ev.Digest)
		p.start[ev.Digest] = time.Now()
	}
	prev := p.layers[ev.Digest]
	e := ev
	p.layers[ev.Digest] = &e
	if !p.tty {
		if ev.State != image.LayerFetching && (prev == nil || prev.State == image.LayerFetching) {
			fmt.Fprintln(p.w, p.line(ev.Digest))
		}
		return
	}
	if ev.State == image.LayerFetching && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.draw()
}

func (p *progress) draw() {
	p.last = time.Now()
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	for _, d := range p.order {
		fmt.Fprintf(p.w, "\x1b[2K%s\n", p.line(d))
	}
	p.drawn = len(p.order)
}

func (p *progress) line(d v1.Hash) string {
	ev := p.layers[d]
	short := d.Hex
	if len(short) > 12 {
		short = short[:12]
	}
	switch ev.State {
	case image.LayerCached:
		return short + ": already present"
	case image.LayerDone:
		return fmt.Sprintf("%s: done %s", short, bytesText(ev.Total))
	}
	rate := float64(ev.Done) / max(time.Since(p.start[d]).Seconds(), 0.001)
	return fmt.Sprintf("%s: %s / %s  %s/s", short, bytesText(ev.Done), bytesText(ev.Total), bytesText(int64(rate)))
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && len(p.order) > 0 {
		p.draw()
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// pullNow opens the store and ensures ref in it (ensureImage), stopping
// cleanly on INT or TERM.
func pullNow(ref string, po pullOptions) (*image.Store, *image.Image, error) {
	st, err := openStore()
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := signalContext()
	defer stop()
	im, err := ensureImage(ctx, st, ref, po)
	return st, im, err
}

// signalContext is cancelled by INT or TERM: a pull stops cleanly (its
// partial blob stays for the next pull to resume).
func signalContext() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

func addPullFlags(cmd *cobra.Command, po *pullOptions) {
	fs := cmd.Flags()
	fs.StringVar(&po.platform, "platform", "", "the image's platform, OS/ARCH[/VARIANT] (default: this machine's)")
	fs.BoolVar(&po.tlsVerify, "tls-verify", true, "require HTTPS with a valid certificate (plain HTTP is always allowed to loopback registries)")
}

func newPullCommand() *cobra.Command {
	po := &pullOptions{policy: "always"}
	cmd := &cobra.Command{
		Use:   "pull [-q] IMAGE",
		Short: "Pull an image: a docker reference (nginx, registry:5000/app:1) or oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, im, err := pullNow(args[0], *po)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), im.Digest)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&po.quiet, "quiet", "q", false, "no progress")
	addPullFlags(cmd, po)
	return cmd
}

func newImagesCommand() *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "images [-q] [--format json]",
		Aliases: []string{"ls"},
		Short:   "List the images in the store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			list, err := st.List()
			if err != nil {
				return err
			}
			return printImages(cmd.OutOrStdout(), list, quiet, format)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the image IDs only")
	cmd.Flags().StringVar(&format, "format", "", "json: one JSON array")
	return cmd
}

func printImages(w io.Writer, list []image.Summary, quiet bool, format string) error {
	sort.Slice(list, func(i, j int) bool { return list[i].Created.After(list[j].Created) })
	switch {
	case quiet:
		for _, s := range list {
			fmt.Fprintln(w, s.Digest.Hex[:12])
		}
		return nil
	case format == "json":
		b, err := json.Marshal(list)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", b)
		return nil
	case format != "":
		return fmt.Errorf("--format %q: use json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, s := range list {
		refs := s.Refs
		if len(refs) == 0 {
			refs = []string{"<none>:<none>"}
		}
		for _, r := range refs {
			repo, tag := splitRef(r)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, s.Digest.Hex[:12], created(s.Created), bytesText(s.Size))
		}
	}
	return tw.Flush()
}

// splitRef splits "repo:tag" at the tag's colon (not a registry port's).
func splitRef(r string) (string, string) {
	i := strings.LastIndexByte(r, ':')
	if i < 0 || strings.Contains(r[i:], "/") {
		return r, "<none>"
	}
	return r[:i], r[i+1:]
}

func newRmiCommand() *cobra.Command {
	var inUse []string
	cmd := &cobra.Command{
		Use:               "rmi IMAGE...",
		Short:             "Remove images (their layers too, when no other image uses them)",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeImages,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			for _, ref := range args {
				if err := checkImageUnused(st, ref, inUse); err != nil {
					return err
				}
				rm, err := st.Remove(context.Background(), ref)
				if err != nil {
					return err
				}
				for _, u := range rm.Untagged {
					fmt.Fprintln(cmd.OutOrStdout(), "Untagged: "+u)
				}
				for _, d := range rm.Deleted {
					fmt.Fprintln(cmd.OutOrStdout(), "Deleted: "+d.String())
				}
				if err := removeTrees(rm.Trash...); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&inUse, "in-use", nil, "DIGEST=CONTAINER of a container's image (rabbitc passes them)")
	cmd.Flags().MarkHidden("in-use")
	return cmd
}

// checkImageUnused refuses to remove an image a container (running or
// kept) was made from: rabbitc passes their image digests (--in-use).
func checkImageUnused(st *image.Store, ref string, inUse []string) error {
	im, err := st.Inspect(ref)
	if err != nil {
		return err
	}
	for _, u := range inUse {
		digest, ctr, _ := strings.Cut(u, "=")
		if digest == im.Digest.String() {
			return fmt.Errorf("image %s is used by container %s: remove the container first (rabbitc rm -f %s)", ref, ctr, ctr)
		}
	}
	return nil
}

func newImageCommand() *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Manage images (ls, pull, rm, prune, inspect)"}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove the layers and blobs no image uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			p, err := st.Prune(context.Background())
			if err != nil {
				return err
			}
			if err := removeTrees(p.Trash...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted %d images, %d blobs, %d layers; reclaimed %s\n", len(p.Images), p.Blobs, len(p.Layers), bytesText(p.Bytes))
			return nil
		},
	}
	inspect := &cobra.Command{
		Use:               "inspect IMAGE",
		Short:             "Print an image's manifest and config as JSON",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeOneImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			im, err := st.Inspect(args[0])
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(im, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		},
	}
	rm := newRmiCommand()
	rm.Use, rm.Aliases = "rm IMAGE...", []string{"rmi"}
	ls := newImagesCommand()
	ls.Use = "ls [-q] [--format json]"
	img.AddCommand(prune, inspect, rm, ls, newPullCommand())
	return img
}

func newSystemCommand() *cobra.Command {
	var inUse []string
	sys := &cobra.Command{Use: "system", Short: "The image store as a whole"}
	reset := &cobra.Command{
		Use:   "reset",
		Short: "Remove the whole image store: every image, layer and blob",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(inUse) > 0 {
				_, ctr, _ := strings.Cut(inUse[0], "=")
				return fmt.Errorf("containers of images exist (%s): remove them first (rabbitc rm -f)", ctr)
			}
			root, err := storeRoot()
			if err != nil {
				return err
			}
			return removeTrees(root)
		},
	}
	reset.Flags().StringArrayVar(&inUse, "in-use", nil, "DIGEST=CONTAINER of a container's image (rabbitc passes them)")
	reset.Flags().MarkHidden("in-use")
	sys.AddCommand(reset)
	return sys
}

// created is the CREATED column: "N/A" for an image whose config has no
// date (rather than two thousand years ago); the epoch, which reproducible
// builds write, shows as it is.
func created(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return ago(time.Since(t)) + " ago"
}
