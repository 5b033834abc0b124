//go:build rabbitc_gendocs

package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/internal/gendocs"
)

// Built with -tags rabbitc_gendocs (make docs), this package is not rabbitc
// but the generator of its man pages and completion scripts, from the
// command trees rabbitc builds (package gendocs says why apart):
//
//	rabbitc-gendocs -version V DIR
//
// writes DIR/man1/rabbitc.1, rabbitc-run.1, ... and the OCI verbs of their
// own (rabbitc-create.1, ...; the ones both command lines share, run, exec,
// kill and ps, have the docker-like page), and DIR/completions/rabbitc.bash,
// _rabbitc, rabbitc.fish. The image commands' pages (rabbitc-pull.1, ...)
// are rabbitc-image's generator's: here they are forwarders without flags.
func main() {
	version := flag.String("version", "dev", "the version the pages name")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: rabbitc-gendocs [-version V] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	root := newRootCommand()
	root.InitDefaultCompletionCmd()
	forwarder := func(c *cobra.Command) bool { return c.Parent() == root && slices.Contains(imageCommands, c.Name()) }
	err := gendocs.ManPages(root, filepath.Join(dir, "man1"), *version, forwarder)
	if err == nil {
		oci, _ := newOCIRoot()
		for _, c := range oci.Commands() {
			if slices.Contains(ociOnlyVerbs, c.Name()) {
				if err = gendocs.ManPages(c, filepath.Join(dir, "man1"), *version, nil); err != nil {
					break
				}
			}
		}
	}
	if err == nil {
		err = gendocs.Completions(root, filepath.Join(dir, "completions"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitc-gendocs:", err)
		os.Exit(1)
	}
}
