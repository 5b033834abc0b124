//go:build !rabbitc_gendocs

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/rabbitc/rabbitc/userns"
)

// main is rabbitc-image's; built with -tags rabbitc_gendocs, the package is
// the generator of the image commands' man pages instead (gendocs.go).
func main() {
	if len(os.Args) > 2 && os.Args[1] == "init" {
		ch := userns.NewChannel(os.NewFile(userns.SyncFD, "sync"))
		switch os.Args[2] {
		case "unpack":
			os.Exit(unpackMain(ch))
		case "rmtree":
			os.Exit(userns.ServeRmtree(ch))
		}
		os.Exit(125)
	}
	err := newRootCommand().Execute()
	if err == nil {
		return
	}
	var se *userns.StageError
	if errors.As(err, &se) {
		err = errors.New(se.Msg)
	}
	fmt.Fprintf(os.Stderr, "rabbitc: %s\n", err)
	os.Exit(125)
}
