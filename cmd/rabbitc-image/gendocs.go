//go:build rabbitc_gendocs

package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rabbitc/rabbitc/internal/gendocs"
)

// Built with -tags rabbitc_gendocs (make docs), this package is the
// generator of the image commands' man pages, rabbitc-pull.1,
// rabbitc-image-ls.1, ... (rabbitc's own generator writes rabbitc.1):
//
//	rabbitc-image-gendocs -version V DIR
func main() {
	version := flag.String("version", "dev", "the version the pages name")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: rabbitc-image-gendocs [-version V] DIR")
		os.Exit(2)
	}
	root := newRootCommand()
	for _, c := range root.Commands() {
		if err := gendocs.ManPages(c, flag.Arg(0), *version, nil); err != nil {
			fmt.Fprintln(os.Stderr, "rabbitc-image-gendocs:", err)
			os.Exit(1)
		}
	}
}
